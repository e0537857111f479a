/* qosinspect._speedups: an optional accelerator for the hot paths of the capture decoder.
 *
 * The Python modules are the reference implementation and keep every rule; this extension only
 * takes the common cases (the way CPython's json has _json) and hands everything else back to
 * them, so that both paths give identical results (tests/speedups checks it differentially):
 *
 *   framing.c  StreamDecoder.feed for short acks, PUBLISH to a topic already validated on the
 *              stream (3.1.x, and 5.0 without properties), PINGREQ/PINGRESP; any other packet,
 *              and every error, goes to StreamDecoder._decode (Python).
 *   walk.c     the pcap/pcapng record walk of CaptureFile (on any error or oddity it hands the
 *              walk to the Python generators, started where it stopped).
 *   capture.c  CaptureEngine: the IPv4/TCP in-order fast path of CapturePipeline, and for a
 *              connection in its steady state (CONNECT seen, sides known) the MQTT decoding and
 *              MqttPacketEvent construction of CaptureDecoder. Any other frame or record is
 *              returned to the Python code unchanged.
 *   jsonl.c    the JSON line of a PUBLISH or acknowledgement event of `qosinspect decode`.
 *
 * Nothing here holds a QoS rule: the analysis (which acknowledgement closes which step, sessions,
 * deliveries) is written once, in Python (qosinspect/analysis), and compiled with mypyc where a
 * compiler is available (setup.py), never copied into C.
 *
 * The Python classes' state is read and written through their __slots__ (offsets found once by
 * configure_*() and verified, see slot_offset; types checked on every use). Nothing here parses anything the Python code
 * does not parse first: the C code trusts no length, checks every bound, and on anything
 * unexpected (a type, a value out of range) stops and lets Python decide.
 *
 * QOSINSPECT_PURE=1 in the environment keeps the package from loading this module
 * (qosinspect/_accel.py).
 */
#include "speedups.h"

/* A size attribute of a type (__basicsize__, __itemsize__). */
static int type_size(PyObject *cls, const char *attr, Py_ssize_t *v)
{
    PyObject *x = PyObject_GetAttrString(cls, attr);
    if (x == NULL)
        return -1;
    *v = PyLong_AsSsize_t(x);
    Py_DECREF(x);
    return *v == -1 && PyErr_Occurred() ? -1 : 0;
}

/* The offset of the object slot `name` of cls (a __slots__ entry: a member descriptor).
 *
 * The limited API does not show a member descriptor's PyMemberDef, so the offset is found by
 * experiment, once: a blank instance of cls (allocated, zero-filled, no __new__ or __init__
 * run) is given a fresh sentinel through the descriptor's __set__; exactly one pointer-sized
 * word of the instance (within type.__basicsize__, after the object header) must then hold it;
 * and a second sentinel stored at that word must read back through the descriptor's __get__.
 * Anything else (not a member descriptor, an instance of variable size, no word or two words
 * holding the sentinel, a descriptor that does not read what was stored) is a TypeError, raised
 * by configure_*() at import: the C code never runs against a layout it did not verify. */
int slot_offset(PyObject *cls, const char *name, Py_ssize_t *off)
{
    PyObject *d = NULL, *probe = NULL, *first = NULL, *second = NULL, *r = NULL;
    Py_ssize_t basic, item, at = -1, found = 0;
    int rc = -1;
    if (!PyType_Check(cls)) {
        PyErr_Format(PyExc_TypeError, "%R is not a class", cls);
        return -1;
    }
    d = PyObject_GetAttrString(cls, name);
    if (d == NULL)
        return -1;
    if (!Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%R.%s is not a slot", cls, name);
        goto out;
    }
    if (type_size(cls, "__basicsize__", &basic) < 0 || type_size(cls, "__itemsize__", &item) < 0)
        goto out;
    if (item != 0) {
        PyErr_Format(PyExc_TypeError, "%R has instances of variable size", cls);
        goto out;
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot((PyTypeObject *)cls, Py_tp_alloc);
    if (alloc == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "%R has no allocator", cls);
        goto out;
    }
    probe = alloc((PyTypeObject *)cls, 0);
    first = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    second = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    if (probe == NULL || first == NULL || second == NULL)
        goto out;
    r = PyObject_CallMethod(d, "__set__", "OO", probe, first);
    if (r == NULL)
        goto out;
    Py_CLEAR(r);
    for (Py_ssize_t o = (Py_ssize_t)sizeof(PyObject); o + (Py_ssize_t)sizeof(PyObject *) <= basic;
         o += (Py_ssize_t)sizeof(PyObject *))
        if (SLOT(probe, o) == first) {
            at = o;
            found++;
        }
    if (found != 1) {
        PyErr_Format(PyExc_TypeError, "%R.%s: the slot was not found in the instance", cls, name);
        goto out;
    }
    slot_set(probe, at, Py_NewRef(second));
    r = PyObject_CallMethod(d, "__get__", "OO", probe, cls);
    if (r == NULL)
        goto out;
    if (r != second) {
        PyErr_Format(PyExc_TypeError, "%R.%s does not read the word it was found at", cls, name);
        goto out;
    }
    *off = at;
    rc = 0;
out:
    Py_XDECREF(r);
    Py_XDECREF(probe);
    Py_XDECREF(first);
    Py_XDECREF(second);
    Py_DECREF(d);
    return rc;
}

int int_ll(PyObject *x, long long *v)
{
    int overflow = 0;
    *v = PyLong_AsLongLongAndOverflow(x, &overflow);
    if (overflow || (*v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

int exact_ll(PyObject *x, long long *v)
{
    if (x == NULL || !PyLong_CheckExact(x))
        return -1;
    return int_ll(x, v);
}

int slot_ll(PyObject *o, Py_ssize_t off, long long *v)
{
    PyObject *x = SLOT(o, off);
    if (x == NULL || !PyLong_Check(x))
        return -1;
    return int_ll(x, v);
}

int slot_set_ll(PyObject *o, Py_ssize_t off, long long v)
{
    PyObject *x = PyLong_FromLongLong(v);
    if (x == NULL)
        return -1;
    slot_set(o, off, x);
    return 0;
}

void slot_set(PyObject *o, Py_ssize_t off, PyObject *v)
{
    PyObject *old = SLOT(o, off);
    SLOT(o, off) = v;
    Py_XDECREF(old);
}

int slot_bool(PyObject *o, Py_ssize_t off)
{
    PyObject *x = SLOT(o, off);
    if (x == Py_True)
        return 1;
    if (x == Py_False)
        return 0;
    return -1;
}

allocfunc tuple_alloc(PyObject *cls, const char *what)
{
    allocfunc alloc = NULL;
    if (PyType_Check(cls) && PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type))
        alloc = (allocfunc)PyType_GetSlot((PyTypeObject *)cls, Py_tp_alloc);
    if (alloc == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "%s must be a NamedTuple", what);
    return alloc;
}

PyObject *new_namedtuple(PyObject *cls, allocfunc alloc, Py_ssize_t n, PyObject **items)
{
    PyObject *t = NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (items[i] == NULL)
            goto fail;
    /* what tuple.__new__(cls, items) does for a subclass (tuple_subtype_new) */
    t = alloc((PyTypeObject *)cls, n);
    if (t == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = items[i];
        items[i] = NULL;
        if (PyTuple_SetItem(t, i, v) < 0) /* steals v, also on failure */
            goto fail;
    }
    /* The packets, events and records built here are immutable tuples of values that never
     * refer back to them: they can be in no reference cycle, so the cyclic GC need not visit
     * them (CPython untracks plain tuples of atoms the same way, but not tuple subclasses). */
    PyObject_GC_UnTrack(t);
    return t;
fail:
    for (Py_ssize_t i = 0; i < n; i++)
        Py_XDECREF(items[i]);
    Py_XDECREF(t);
    return NULL;
}

int join_chunks(PyObject *chunks, const void *tail, Py_ssize_t n, PyObject **out)
{
    Py_ssize_t count = PyList_Size(chunks), total = n;
    if (count < 0)
        return -1;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *c = PyList_GetItem(chunks, i);
        if (c == NULL)
            return -1;
        if (!PyBytes_CheckExact(c))
            return 1;
        total += PyBytes_Size(c);
    }
    PyObject *joined = PyBytes_FromStringAndSize(NULL, total);
    if (joined == NULL)
        return -1;
    char *w = PyBytes_AsString(joined);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *c = PyList_GetItem(chunks, i);
        Py_ssize_t len = PyBytes_Size(c);
        memcpy(w, PyBytes_AsString(c), len);
        w += len;
    }
    if (n)
        memcpy(w, tail, n);
    *out = joined;
    return 0;
}

static PyMethodDef methods[] = {
    {"configure_framing", sp_configure_framing, METH_VARARGS,
     "configure_framing(StreamDecoder, acks, publishes, Publish, NO_PROPERTIES, PINGREQ, "
     "PINGRESP): the classes and constants of qosinspect.mqtt the fast loop builds from."},
    {"stream_feed", (PyCFunction)(void (*)(void))sp_stream_feed, METH_FASTCALL,
     "stream_feed(decoder, data): StreamDecoder.feed for a decoder neither failed nor "
     "resynchronising."},
    {"configure_capture", sp_configure_capture, METH_VARARGS,
     "configure_capture(HalfStream, Flow, StreamData, Interface): the classes the capture "
     "engine reads and builds."},
    {"configure_mqtt_stage", sp_configure_mqtt_stage, METH_VARARGS,
     "configure_mqtt_stage(_Conn, _Side, MqttPacketEvent, C2B): what the engine's MQTT step "
     "reads and builds (qosinspect/capture/decoder.py)."},
    {"configure_jsonl", sp_configure_jsonl, METH_VARARGS,
     "configure_jsonl(MqttPacketEvent, Publish, acks): the classes the JSONL writer formats."},
    {"jsonl_batch", (PyCFunction)(void (*)(void))sp_jsonl_batch, METH_FASTCALL,
     "jsonl_batch(formatter, iterator, limit) -> (text, events, done, error)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "qosinspect._speedups",
    "Optional C accelerator of qosinspect's hot paths (see qosinspect/_accel.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    PyObject *engine = PyType_FromSpec(&CaptureEngineSpec);
    int rc = engine == NULL ? -1 : PyModule_AddObjectRef(m, "CaptureEngine", engine);
    Py_XDECREF(engine);
    if (rc < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
