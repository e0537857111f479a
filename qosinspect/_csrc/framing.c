/* The stream decoder's fast loop (qosinspect/mqtt/framing.py has the reference and the rules).
 *
 * fast_packets() builds, exactly as StreamDecoder._decode's own fast path does, the packets
 * that need no validation beyond what is checked here: the short form (remaining length 2) of
 * PUBACK/PUBREC/PUBREL/PUBCOMP with a non-zero packet id, a PUBLISH with valid flags whose topic
 * is already in the stream's cache of validated topics (MQTT 5: with property length 0), and
 * PINGREQ/PINGRESP. It stops at the first packet that is anything else, incomplete, longer than
 * a two-byte remaining length can say or over the maximum packet size; the caller then hands
 * the rest to the Python code, which decides (and reports every error).
 */
#include "speedups.h"

DecoderSlots DEC;

static PyObject *ACK_CLS[256];      /* first byte -> ack class (borrowed from ACKS) or NULL */
static allocfunc ACK_ALLOC[256];    /* and its allocator */
static PyObject *ACK_SUCCESS[256];  /* first byte -> its Success reason */
static signed char PUB_QOS[256];    /* first byte -> qos of a valid PUBLISH, or -1 */
static PyObject *ACKS, *PUBLISHES, *PUBLISH, *NO_PROPS, *PINGREQ, *PINGRESP;
static allocfunc PUBLISH_ALLOC;
static PyObject *STR_DECODE;
static int READY;

int framing_ready(void) { return READY; }

PyObject *sp_configure_framing(PyObject *module, PyObject *args)
{
    PyObject *cls, *acks, *pubs, *publish, *noprops, *pingreq, *pingresp;
    if (!PyArg_ParseTuple(args, "OO!O!O!OOO", &cls, &PyList_Type, &acks, &PyList_Type, &pubs,
                          &PyType_Type, &publish, &noprops, &pingreq, &pingresp))
        return NULL;
    if (PyList_Size(acks) != 256 || PyList_Size(pubs) != 256) {
        PyErr_SetString(PyExc_ValueError, "tables of 256 entries expected");
        return NULL;
    }
    allocfunc publish_alloc = tuple_alloc(publish, "Publish");
    if (publish_alloc == NULL)
        return NULL;
    DecoderSlots d;
    d.cls = cls;
    if (slot_offset(cls, "_chunks", &d.chunks) || slot_offset(cls, "_pending", &d.pending) ||
        slot_offset(cls, "_need", &d.need) || slot_offset(cls, "_offset", &d.offset) ||
        slot_offset(cls, "_resync", &d.resync) || slot_offset(cls, "_failed", &d.failed) ||
        slot_offset(cls, "_topics", &d.topics) || slot_offset(cls, "version", &d.version) ||
        slot_offset(cls, "max_packet_size", &d.max_packet_size) ||
        slot_offset(cls, "sizes", &d.sizes))
        return NULL;
    /* the tables are checked whole before any of them replaces the one in use */
    PyObject *ack_cls[256], *ack_success[256];
    allocfunc ack_alloc[256];
    signed char pub_qos[256];
    for (int b = 0; b < 256; b++) {
        PyObject *a = PyList_GetItem(acks, b), *a0 = NULL, *a1 = NULL;
        ack_cls[b] = ack_success[b] = NULL;
        ack_alloc[b] = NULL;
        if (a != Py_None) {
            if (!PyTuple_Check(a) || !PyArg_UnpackTuple(a, "ack", 2, 2, &a0, &a1) ||
                (ack_alloc[b] = tuple_alloc(a0, "ack class")) == NULL) {
                PyErr_Clear();
                PyErr_SetString(PyExc_TypeError, "ack table: (NamedTuple class, reason)");
                return NULL;
            }
            ack_cls[b] = a0;
            ack_success[b] = a1;
        }
        PyObject *p = PyList_GetItem(pubs, b), *q = NULL, *dup = NULL, *retain = NULL;
        pub_qos[b] = -1;
        if (p != Py_None) {
            if (!PyTuple_Check(p) || !PyArg_UnpackTuple(p, "publish", 3, 3, &q, &dup, &retain)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_TypeError, "publish table: (qos, dup, retain)");
                return NULL;
            }
            long qos = PyLong_AsLong(q);
            if (qos < 0 || qos > 2 || dup != ((b & 8) ? Py_True : Py_False) ||
                retain != ((b & 1) ? Py_True : Py_False) || (b >> 1 & 3) != qos) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "publish table disagrees with the flags");
                return NULL;
            }
            pub_qos[b] = (signed char)qos;
        }
    }
    if (STR_DECODE == NULL && (STR_DECODE = PyUnicode_InternFromString("_decode")) == NULL)
        return NULL;
    Py_INCREF(cls);
    Py_XDECREF(DEC.cls);
    DEC = d;
    /* ACK_CLS and ACK_SUCCESS are borrowed from ACKS, which holds them */
    memcpy(ACK_CLS, ack_cls, sizeof ACK_CLS);
    memcpy(ACK_SUCCESS, ack_success, sizeof ACK_SUCCESS);
    memcpy(ACK_ALLOC, ack_alloc, sizeof ACK_ALLOC);
    PUBLISH_ALLOC = publish_alloc;
    memcpy(PUB_QOS, pub_qos, sizeof PUB_QOS);
    xsetref(&ACKS, Py_NewRef(acks));
    xsetref(&PUBLISHES, Py_NewRef(pubs));
    xsetref(&PUBLISH, Py_NewRef(publish));
    xsetref(&NO_PROPS, Py_NewRef(noprops));
    xsetref(&PINGREQ, Py_NewRef(pingreq));
    xsetref(&PINGRESP, Py_NewRef(pingresp));
    READY = 1;
    Py_RETURN_NONE;
}

static PyObject *make_ack(int first, unsigned pid)
{
    PyObject *items[3] = {PyLong_FromUnsignedLong(pid), Py_NewRef(ACK_SUCCESS[first]),
                          Py_NewRef(NO_PROPS)};
    return new_namedtuple(ACK_CLS[first], ACK_ALLOC[first], 3, items);
}

static PyObject *make_publish(PyObject *topic, const unsigned char *payload, Py_ssize_t plen,
                              int first, long pid)
{
    PyObject *items[7] = {
        Py_NewRef(topic),
        PyBytes_FromStringAndSize((const char *)payload, plen),
        PyLong_FromLong(PUB_QOS[first]),
        Py_NewRef((first & 8) ? Py_True : Py_False),
        Py_NewRef((first & 1) ? Py_True : Py_False),
        pid < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(pid),
        Py_NewRef(NO_PROPS),
    };
    return new_namedtuple(PUBLISH, PUBLISH_ALLOC, 7, items);
}

Py_ssize_t fast_packets(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n, PyObject *topics,
                        int v5, long long max_size, Emitter *em, int *why, Py_ssize_t *need)
{
    /* a packet within size_guard body bytes cannot exceed max_size (header <= 5 bytes) */
    long long size_guard = max_size - 5;
    PyObject *last_raw = NULL, *last_topic = NULL; /* one-entry cache in front of the dict */
    const char *last_p = NULL;                     /* last_raw's bytes */
    Py_ssize_t last_n = -1;
    *need = 0;
    *why = STOP_END;
    while (pos <= n - 2) {
        int first = buf[pos];
        Py_ssize_t length = buf[pos + 1], start;
        if (length < 0x80)
            start = pos + 2;
        else if (n - pos > 2 && buf[pos + 2] > 0 && buf[pos + 2] < 0x80) {
            length = (length & 0x7F) | ((Py_ssize_t)buf[pos + 2] << 7);
            start = pos + 3;
        }
        else {
            *why = STOP_OTHER;
            break;
        }
        Py_ssize_t end = start + length;
        if (length > size_guard && end - pos > max_size) {
            *why = STOP_OTHER;
            break;
        }
        if (end > n) {
            *why = STOP_INCOMPLETE;
            *need = end - pos;
            break;
        }
        PyObject *packet = NULL;
        if (length == 2) {
            unsigned pid = ((unsigned)buf[start] << 8) | buf[start + 1];
            if (ACK_CLS[first] == NULL || pid == 0) {
                *why = STOP_OTHER;
                break;
            }
            packet = make_ack(first, pid);
        }
        else if (PUB_QOS[first] >= 0 && length > 2) {
            Py_ssize_t tstop = start + 2 + (((Py_ssize_t)buf[start] << 8) | buf[start + 1]);
            if (tstop > end) {
                *why = STOP_OTHER;
                break;
            }
            Py_ssize_t tlen = tstop - start - 2;
            PyObject *topic;
            if (last_n == tlen && memcmp(last_p, buf + start + 2, tlen) == 0)
                topic = last_topic;
            else {
                if (topics == Py_None) { /* no cache yet: the Python code makes it */
                    *why = STOP_OTHER;
                    break;
                }
                PyObject *raw = PyBytes_FromStringAndSize((const char *)buf + start + 2, tlen);
                if (raw == NULL)
                    goto error;
                topic = PyDict_GetItemWithError(topics, raw);
                if (topic == NULL) {
                    Py_DECREF(raw);
                    if (PyErr_Occurred())
                        goto error;
                    *why = STOP_OTHER;
                    break;
                }
                if (!PyUnicode_CheckExact(topic)) {
                    Py_DECREF(raw);
                    *why = STOP_OTHER;
                    break;
                }
                xsetref(&last_raw, raw);
                xsetref(&last_topic, Py_NewRef(topic));
                last_p = PyBytes_AsString(raw);
                last_n = tlen;
            }
            long pid;
            if (PUB_QOS[first] == 0)
                pid = -1; /* None */
            else if (tstop + 2 <= end) {
                pid = ((long)buf[tstop] << 8) | buf[tstop + 1];
                tstop += 2;
            }
            else
                pid = 0;
            if (v5) {
                if (tstop >= end || buf[tstop])
                    pid = 0; /* properties to read: the full decoder does it */
                tstop += 1;
            }
            if (pid == 0 || tstop > end) {
                *why = STOP_OTHER;
                break;
            }
            packet = make_publish(topic, buf + tstop, end - tstop, first, pid);
        }
        else if (length == 0 && (first == 0xC0 || first == 0xD0))
            packet = Py_NewRef(first == 0xC0 ? PINGREQ : PINGRESP);
        else {
            *why = STOP_OTHER;
            break;
        }
        if (packet == NULL || em->emit(em->ctx, packet, end - pos) < 0)
            goto error;
        pos = end;
    }
    Py_XDECREF(last_raw);
    Py_XDECREF(last_topic);
    return pos;
error:
    Py_XDECREF(last_raw);
    Py_XDECREF(last_topic);
    *why = STOP_ERROR;
    return pos;
}

/* --- StreamDecoder.feed ----------------------------------------------------------------------- */

typedef struct {
    PyObject *out, *sizes;
} ListSink;

static int emit_to_lists(void *ctx, PyObject *packet, Py_ssize_t size)
{
    ListSink *s = ctx;
    int rc = PyList_Append(s->out, packet);
    Py_DECREF(packet);
    if (rc < 0)
        return -1;
    PyObject *sz = PyLong_FromSsize_t(size);
    if (sz == NULL)
        return -1;
    rc = PyList_Append(s->sizes, sz);
    Py_DECREF(sz);
    return rc;
}

/* stream_feed(decoder, data): the body of StreamDecoder.feed when the decoder has neither
 * failed nor lost its framing (framing.py checks both before calling). */
PyObject *sp_stream_feed(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "stream_feed(decoder, data)");
        return NULL;
    }
    PyObject *self = args[0], *data = args[1];
    if (!READY || !PyObject_TypeCheck(self, (PyTypeObject *)DEC.cls)) {
        PyErr_SetString(PyExc_TypeError, "stream_feed needs a configured StreamDecoder");
        return NULL;
    }
    long long pending, need, offset, version, max_size;
    PyObject *chunks = SLOT(self, DEC.chunks), *topics = SLOT(self, DEC.topics);
    if (slot_ll(self, DEC.pending, &pending) || slot_ll(self, DEC.need, &need) ||
        slot_ll(self, DEC.offset, &offset) || slot_ll(self, DEC.version, &version) ||
        slot_ll(self, DEC.max_packet_size, &max_size) || chunks == NULL ||
        (chunks != Py_None && !PyList_CheckExact(chunks)) || topics == NULL ||
        (topics != Py_None && !PyDict_CheckExact(topics))) {
        PyErr_SetString(PyExc_TypeError, "StreamDecoder state of unexpected types");
        return NULL;
    }
    PyObject *sizes = PyList_New(0);
    if (sizes == NULL)
        return NULL;
    Py_INCREF(sizes);
    slot_set(self, DEC.sizes, sizes);
    PyObject *buf = NULL, *out = NULL, *result = NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        goto done;
    if (view.len == 0) {
        PyBuffer_Release(&view);
        result = PyList_New(0);
        goto done;
    }
    if (chunks != Py_None && PyList_Size(chunks) > 0) {
        PyObject *copy = PyBytes_FromStringAndSize(view.buf, view.len);
        Py_ssize_t vlen = view.len;
        PyBuffer_Release(&view);
        if (copy == NULL || PyList_Append(chunks, copy) < 0) {
            Py_XDECREF(copy);
            goto done;
        }
        Py_DECREF(copy);
        pending += vlen;
        if (pending < need) {
            if (slot_set_ll(self, DEC.pending, pending) == 0)
                result = PyList_New(0);
            goto done;
        }
        int joined = join_chunks(chunks, NULL, 0, &buf);
        if (joined > 0)
            PyErr_SetString(PyExc_TypeError, "StreamDecoder._chunks holds other than bytes");
        if (joined != 0)
            goto done;
        /* no buffer held: None, as the Python code leaves it (an idle stream keeps no list) */
        slot_set(self, DEC.chunks, Py_NewRef(Py_None));
        chunks = Py_None;
        if (slot_set_ll(self, DEC.pending, 0) < 0)
            goto done;
    }
    else if (PyBytes_CheckExact(data)) {
        PyBuffer_Release(&view);
        buf = Py_NewRef(data);
    }
    else {
        buf = PyBytes_FromStringAndSize(view.buf, view.len);
        PyBuffer_Release(&view);
        if (buf == NULL)
            goto done;
    }
    out = PyList_New(0);
    if (out == NULL || slot_set_ll(self, DEC.need, 0) < 0)
        goto done;
    const unsigned char *p = (const unsigned char *)PyBytes_AsString(buf);
    Py_ssize_t n = PyBytes_Size(buf), got_need;
    ListSink sink = {out, sizes};
    Emitter em = {emit_to_lists, &sink};
    int why;
    Py_ssize_t pos = fast_packets(p, 0, n, topics, version >= 5, max_size, &em, &why, &got_need);
    if (why == STOP_ERROR)
        goto done;
    if (why == STOP_OTHER) {
        /* the Python loop takes it from here (and sets _need itself) */
        PyObject *at = PyLong_FromSsize_t(pos), *end = PyLong_FromSsize_t(n);
        PyObject *r = (at && end) ? PyObject_CallMethodObjArgs(self, STR_DECODE, buf, at, end,
                                                               out, sizes, NULL) : NULL;
        Py_XDECREF(at);
        Py_XDECREF(end);
        if (r == NULL)
            goto done;
        pos = PyLong_AsSsize_t(r);
        Py_DECREF(r);
        if (pos == -1 && PyErr_Occurred())
            goto done;
        if (pos < 0 || pos > n) {
            PyErr_SetString(PyExc_RuntimeError, "StreamDecoder._decode returned a bad position");
            goto done;
        }
    }
    else if (why == STOP_INCOMPLETE && slot_set_ll(self, DEC.need, got_need) < 0)
        goto done;
    if (pos < n) {
        PyObject *rest = PyBytes_FromStringAndSize((const char *)p + pos, n - pos);
        if (rest == NULL)
            goto done;
        PyObject *lst = PyList_New(1);
        if (lst == NULL) {
            Py_DECREF(rest);
            goto done;
        }
        if (PyList_SetItem(lst, 0, rest) < 0) { /* steals rest */
            Py_DECREF(lst);
            goto done;
        }
        slot_set(self, DEC.chunks, lst);
        if (slot_set_ll(self, DEC.pending, n - pos) < 0)
            goto done;
    }
    if (slot_set_ll(self, DEC.offset, offset + pos) < 0)
        goto done;
    result = Py_NewRef(out);
done:
    Py_XDECREF(buf);
    Py_XDECREF(out);
    Py_DECREF(sizes);
    return result;
}
