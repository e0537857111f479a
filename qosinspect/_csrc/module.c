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
 * configure_*(), types checked on every use). Nothing here parses anything the Python code
 * does not parse first: the C code trusts no length, checks every bound, and on anything
 * unexpected (a type, a value out of range) stops and lets Python decide.
 *
 * QOSINSPECT_PURE=1 in the environment keeps the package from loading this module
 * (qosinspect/_accel.py).
 */
#include "speedups.h"

int slot_offset(PyObject *cls, const char *name, Py_ssize_t *off)
{
    PyObject *d = PyObject_GetAttrString(cls, name);
    if (d == NULL)
        return -1;
    if (!Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%R.%s is not a slot", cls, name);
        Py_DECREF(d);
        return -1;
    }
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != T_OBJECT_EX) {
        PyErr_Format(PyExc_TypeError, "%R.%s is not an object slot", cls, name);
        Py_DECREF(d);
        return -1;
    }
    *off = m->offset;
    Py_DECREF(d);
    return 0;
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

PyObject *new_namedtuple(PyTypeObject *cls, Py_ssize_t n)
{
    /* what tuple.__new__(cls, items) does for a subclass (tuple_subtype_new) */
    return cls->tp_alloc(cls, n);
}

void untrack(PyObject *t)
{
    /* The packets, events and records built here are immutable tuples of values that never
     * refer back to them: they can be in no reference cycle, so the cyclic GC need not visit
     * them (CPython untracks plain tuples of atoms the same way, but not tuple subclasses). */
    PyObject_GC_UnTrack(t);
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
    if (PyType_Ready(&CaptureEngineType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CaptureEngineType);
    if (PyModule_AddObject(m, "CaptureEngine", (PyObject *)&CaptureEngineType) < 0) {
        Py_DECREF(&CaptureEngineType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
