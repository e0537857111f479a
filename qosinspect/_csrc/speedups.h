/* Shared declarations of qosinspect._speedups (see module.c for the why).
 *
 * The extension is built against the stable ABI (setup.py defines Py_LIMITED_API=0x030B0000:
 * one qosinspect/_speedups.abi3.so for CPython 3.11 and every later version), so only the
 * limited API is used here: no access to the inside of tuples, lists, bytes or type objects
 * (PyTuple_GetItem, not PyTuple_GET_ITEM; PyType_GetSlot, not tp_alloc), a heap type made by
 * PyType_FromSpec for CaptureEngine, and the offsets of __slots__ found by experiment
 * (slot_offset in module.c). The compiler enforces it: a macro outside the limited API is an
 * undeclared name. */
#ifndef QOSINSPECT_SPEEDUPS_H
#define QOSINSPECT_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include "structmember.h"

#ifndef Py_LIMITED_API
#error "qosinspect._speedups is built against the stable ABI: setup.py defines Py_LIMITED_API"
#endif

/* Py_XSETREF, outside the limited API: store src in *dst and release what *dst held. */
static inline void xsetref(PyObject **dst, PyObject *src)
{
    PyObject *old = *dst;
    *dst = src;
    Py_XDECREF(old);
}

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
/* The allocator of cls, a tuple subclass (a NamedTuple class); NULL with a TypeError otherwise.
 * Looked up once, by configure_*(), and kept beside the class for new_namedtuple. */
allocfunc tuple_alloc(PyObject *cls, const char *what);
/* An instance of cls (a NamedTuple class, alloc its tuple_alloc) holding items[0..n-1], out of
 * the cyclic GC (see module.c). Steals every item, also on failure; NULL with the exception
 * set when an item is NULL (its maker failed) or allocation fails. */
PyObject *new_namedtuple(PyObject *cls, allocfunc alloc, Py_ssize_t n, PyObject **items);
/* b"".join(chunks) + tail[:n] as a new bytes object in *out: 0; 1 when a chunk is not exactly
 * bytes (nothing set); -1 with an exception. */
int join_chunks(PyObject *chunks, const void *tail, Py_ssize_t n, PyObject **out);

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
/* the spec of the heap type CaptureEngine (module.c creates it with PyType_FromSpec) */
extern PyType_Spec CaptureEngineSpec;
PyObject *sp_configure_capture(PyObject *module, PyObject *args);
PyObject *sp_configure_mqtt_stage(PyObject *module, PyObject *args);

/* --- jsonl.c -------------------------------------------------------------------------------- */
PyObject *sp_jsonl_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_configure_jsonl(PyObject *module, PyObject *args);

#endif
