/* Shared declarations of qosinspect._speedups (see module.c for the why). */
#ifndef QOSINSPECT_SPEEDUPS_H
#define QOSINSPECT_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "structmember.h"

/* --- reading and writing the __slots__ of the project's Python classes ---------------------
 * A slot of a __slots__ class is a member descriptor: a PyObject* at a fixed offset in the
 * instance. The offsets are looked up once (slot_offset) and the objects' types are checked
 * before every use, so reading h.nxt_seq costs a load instead of an attribute lookup. */
#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

int slot_offset(PyObject *cls, const char *name, Py_ssize_t *off);
/* 0 and *v on an exact int (or bool) slot that fits; -1 otherwise (no exception left set). */
int slot_ll(PyObject *o, Py_ssize_t off, long long *v);
/* The value of an int (x is one) that fits in 64 bits: 0 and *v; -1 otherwise, no exception
 * left set. */
int int_ll(PyObject *x, long long *v);
/* An exact int (not a subclass, not NULL) that fits in 64 bits: 0 and *v; -1 otherwise, no
 * exception left set. */
int exact_ll(PyObject *x, long long *v);
/* Store an int; -1 with an exception on memory exhaustion. */
int slot_set_ll(PyObject *o, Py_ssize_t off, long long v);
/* Store a new reference (stolen). */
void slot_set(PyObject *o, Py_ssize_t off, PyObject *v);
/* 1 true, 0 false, -1 not a bool (no exception). */
int slot_bool(PyObject *o, Py_ssize_t off);
/* A tuple-subclass instance (a NamedTuple) of n items, all NULL; fill with PyTuple_SET_ITEM. */
PyObject *new_namedtuple(PyTypeObject *cls, Py_ssize_t n);
/* Leave a filled, immutable tuple of ours out of the cyclic GC (see module.c). */
void untrack(PyObject *t);

/* --- framing.c ------------------------------------------------------------------------------ */
/* What the fast packet loop was given and where it stopped. */
enum { STOP_END = 0, STOP_INCOMPLETE = 1, STOP_OTHER = 2, STOP_ERROR = -1 };

typedef struct {
    /* called with a new reference (stolen) to each packet and its size on the wire */
    int (*emit)(void *ctx, PyObject *packet, Py_ssize_t size);
    void *ctx;
} Emitter;

int framing_ready(void);
/* Decode the common packets of buf[pos:n]; returns the position reached and sets *why (and
 * *need for STOP_INCOMPLETE when the header is complete, else 0). */
Py_ssize_t fast_packets(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n, PyObject *topics,
                        int v5, long long max_size, Emitter *em, int *why, Py_ssize_t *need);
PyObject *sp_stream_feed(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_configure_framing(PyObject *module, PyObject *args);

/* StreamDecoder slots, shared with the capture engine */
typedef struct {
    PyObject *cls;
    Py_ssize_t chunks, pending, need, offset, resync, failed, topics, version, max_packet_size,
        sizes;
} DecoderSlots;
extern DecoderSlots DEC;

/* --- capture.c ------------------------------------------------------------------------------ */
extern PyTypeObject CaptureEngineType;
PyObject *sp_configure_capture(PyObject *module, PyObject *args);
PyObject *sp_configure_mqtt_stage(PyObject *module, PyObject *args);

/* --- jsonl.c -------------------------------------------------------------------------------- */
PyObject *sp_jsonl_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_configure_jsonl(PyObject *module, PyObject *args);

#endif
