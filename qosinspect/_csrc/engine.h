/* The capture engine's state, shared by walk.c (the record walk) and capture.c (the frames). */
#ifndef QOSINSPECT_ENGINE_H
#define QOSINSPECT_ENGINE_H

#include "speedups.h"

#define RELEASE_STEP (8LL << 20)
#define MAX_CAPLEN 262144

typedef struct {
    int linktype;
    long long snaplen, mul, div, tsoff;
} Iface;

enum { WALK_PCAP, WALK_PCAPNG, WALK_PYTHON, WALK_DONE };

typedef struct {
    PyObject_HEAD
    PyObject *cap, *halves, *pyiter, *ifaces_list;
    /* the capture's clock_notes list (pcapfile.CaptureFile): while it holds a note, records go
     * to the Python loop, which says the notes before the frame, as on the pure path */
    PyObject *notes;
    Py_buffer view;
    int have_view, mqtt, mode;
    const unsigned char *buf;
    Py_ssize_t end;
    long long off, n, release_at;
    /* pcap */
    int big, hdr_len, linktype;
    long long frac_mul;
    /* pcapng */
    int ng_big;
    Iface *ifaces;
    Py_ssize_t nifaces, cap_ifaces;
    long long ng_last_ts;
    /* what the Python side reads after run(): the last record's frame, time and offset (from
     * its tuple when its values do not fit 64 bits: last_tuple), MQTT packets built here */
    long long frames, last_ts, position, packets;
    PyObject *last_tuple;
    /* a piece of a stream (capture/stream.py): a record the end of the buffer cuts short ends
     * the walk there (e->off stays at it: the next read completes it) instead of going to the
     * Python walk, which would call it an error; and the callable that gets every record's
     * (frame, ts_ns, linktype, offset, caplen, orig_len) before the frame loop does (NULL:
     * none) */
    int stream;
    PyObject *on_frame;
    /* half-streams found during one run() (borrowed: nothing that runs inside run() changes
     * the table of half-streams; emptied at every call) */
    struct {
        unsigned char key[12];
        PyObject *h;
    } seen[64];
} Engine;

static inline unsigned rd16(const unsigned char *p, int big)
{
    return big ? ((unsigned)p[0] << 8 | p[1]) : ((unsigned)p[1] << 8 | p[0]);
}
static inline unsigned long rd32(const unsigned char *p, int big)
{
    return big ? ((unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 | p[3])
               : ((unsigned long)p[3] << 24 | (unsigned long)p[2] << 16 | (unsigned long)p[1] << 8 | p[0]);
}


/* One record: the fields, and the tuple when it came from the Python generator (a new
 * reference; lt is -1 when its values do not fit here, so that only Python handles it). */
typedef struct {
    long long n, ts, off, cl, ol;
    int lt;
    PyObject *tuple;
} Rec;

/* the Interface NamedTuple class (set by configure_capture) */
extern PyObject *INTERFACE_CLS;

/* resume: None, or the state a stream's walk resumes with (StreamCapture.resume_state):
 * (offset, frames, last_ts, byte_order, interfaces). */
int walk_init(Engine *e, PyObject *fmt, PyObject *resume);
/* 1 and the record, 0 at the end, -1 with an exception (a CaptureError from Python). */
int next_record(Engine *e, Rec *r);

#endif
