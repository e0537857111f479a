/* The JSON lines of `qosinspect decode --format jsonl` for PUBLISH and acknowledgement events.
 *
 * qosinspect/capture/lines.py (LineFormatter._jsonl_packet) is the reference: a line is its
 * cached constant parts (per connection and direction: _conn_entry; per PUBLISH shape:
 * _pub_entry, which runs json.dumps on the topic) with integers between them. jsonl_batch()
 * pulls events from an iterator and writes those lines itself, asking the formatter for the
 * cached parts on a miss of its own small caches and for the whole line of any other event
 * (anomalies, CONNECT, SUBSCRIBE ..., and anything whose fields are not of the plain types).
 */
#include "speedups.h"

static PyObject *EVENT, *PUBLISH_CLS, *ACK_CLASSES[4], *ACK_TYPE[4];
static PyObject *S_CONN_ENTRY, *S_PUB_ENTRY;

PyObject *sp_configure_jsonl(PyObject *module, PyObject *args)
{
    PyObject *event, *publish, *acks, *types;
    if (!PyArg_ParseTuple(args, "O!O!O!O!", &PyType_Type, &event, &PyType_Type, &publish,
                          &PyTuple_Type, &acks, &PyTuple_Type, &types))
        return NULL;
    if (PyTuple_Size(acks) != 4 || PyTuple_Size(types) != 4) {
        PyErr_SetString(PyExc_ValueError, "four ack classes and their type parts expected");
        return NULL;
    }
    for (int i = 0; i < 4; i++)
        if (!PyUnicode_Check(PyTuple_GetItem(types, i))) {
            PyErr_SetString(PyExc_TypeError, "type parts must be str");
            return NULL;
        }
    if (S_CONN_ENTRY == NULL) {
        S_CONN_ENTRY = PyUnicode_InternFromString("_conn_entry");
        S_PUB_ENTRY = PyUnicode_InternFromString("_pub_entry");
        if (S_CONN_ENTRY == NULL || S_PUB_ENTRY == NULL)
            return NULL;
    }
    xsetref(&EVENT, Py_NewRef(event));
    xsetref(&PUBLISH_CLS, Py_NewRef(publish));
    for (int i = 0; i < 4; i++) {
        xsetref(&ACK_CLASSES[i], Py_NewRef(PyTuple_GetItem(acks, i)));
        xsetref(&ACK_TYPE[i], Py_NewRef(PyTuple_GetItem(types, i)));
    }
    Py_RETURN_NONE;
}

/* --- a growable byte buffer ------------------------------------------------------------------- */
typedef struct {
    char *p;
    Py_ssize_t len, cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + more)
        cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int put(Buf *b, const char *s, Py_ssize_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}
#define PUTS(b, lit) put((b), (lit), (Py_ssize_t)sizeof(lit) - 1)

static const char DIGITS2[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static int put_ll(Buf *b, long long v)
{
    char tmp[24];
    char *w = tmp + sizeof tmp;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    while (u >= 100) {
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        *--w = DIGITS2[d + 1];
        *--w = DIGITS2[d];
    }
    if (u >= 10) {
        *--w = DIGITS2[u * 2 + 1];
        *--w = DIGITS2[u * 2];
    }
    else
        *--w = (char)('0' + u);
    if (v < 0)
        *--w = '-';
    return put(b, w, tmp + sizeof tmp - w);
}

static int put_str(Buf *b, PyObject *s)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL)
        return -1;
    return put(b, u, n);
}

/* --- caches of the formatter's constant parts (references held for the call) ----------------
 * Direct-mapped by the identity of the objects (which the entries keep alive): a miss only
 * asks the formatter, whose own caches have the final word. */
#define NCONN 1024
#define NPUB 256
typedef struct {
    PyObject *conn, *dir, *assumed, *mid, *tail;
    long version; /* -1: None */
} ConnPart;
typedef struct {
    PyObject *topic, *dup, *retain, *head, *tail;
    long qos;
} PubPart;

static inline unsigned mix(const void *p, long extra)
{
    unsigned long long x = (unsigned long long)(Py_uintptr_t)p >> 4;
    x ^= (unsigned long long)extra * 0x9E3779B97F4A7C15ULL;
    x ^= x >> 29;
    return (unsigned)x;
}

/* 1: line written; 0: not a fast event (nothing written); -1: exception. */
static int fast_line(PyObject *fmt, PyObject *ev, Buf *b, ConnPart *cc, PubPart *pc)
{
    /* the fields, unpacked by one call (the limited API has no PyTuple_GET_ITEM) */
    PyObject *e_ts, *conn, *dir, *p, *e_wire, *e_frame, *e_first, *ver, *assumed;
    if (!Py_IS_TYPE(ev, (PyTypeObject *)EVENT) || PyTuple_Size(ev) != 9 ||
        !PyArg_UnpackTuple(ev, "event", 9, 9, &e_ts, &conn, &dir, &p, &e_wire, &e_frame,
                           &e_first, &ver, &assumed)) {
        PyErr_Clear();
        return 0;
    }
    long long ts, frame, wire;
    if (exact_ll(e_ts, &ts) || exact_ll(e_frame, &frame) || exact_ll(e_wire, &wire) ||
        (assumed != Py_True && assumed != Py_False))
        return 0;
    long version = -1;
    if (ver != Py_None) {
        long long v;
        if (exact_ll(ver, &v) || v < 0 || v > 1000)
            return 0;
        version = (long)v;
    }
    int ack = -1;
    if (!Py_IS_TYPE(p, (PyTypeObject *)PUBLISH_CLS)) {
        for (int i = 0; i < 4; i++)
            if (Py_IS_TYPE(p, (PyTypeObject *)ACK_CLASSES[i]))
                ack = i;
        if (ack < 0)
            return 0;
    }
    /* the per-packet fields, checked before anything is written */
    long long pid = 0, plen = 0, rc = 0;
    PyObject *topic = NULL, *dup = NULL, *retain = NULL;
    long qos = 0;
    int pid_none = 0;
    if (ack < 0) {
        PyObject *payload, *q, *id, *props;
        if (PyTuple_Size(p) != 7 || !PyArg_UnpackTuple(p, "publish", 7, 7, &topic, &payload,
                                                       &q, &dup, &retain, &id, &props)) {
            PyErr_Clear();
            return 0;
        }
        long long qq;
        if (!PyUnicode_CheckExact(topic) || !PyBytes_CheckExact(payload) || exact_ll(q, &qq) ||
            (dup != Py_True && dup != Py_False) || (retain != Py_True && retain != Py_False))
            return 0;
        qos = (long)qq;
        plen = PyBytes_Size(payload);
        if (id == Py_None)
            pid_none = 1;
        else if (exact_ll(id, &pid))
            return 0;
    }
    else {
        PyObject *a_pid, *code, *props;
        if (PyTuple_Size(p) != 3 ||
            !PyArg_UnpackTuple(p, "ack", 3, 3, &a_pid, &code, &props)) {
            PyErr_Clear();
            return 0;
        }
        if (exact_ll(a_pid, &pid) || !PyLong_Check(code) || int_ll(code, &rc) < 0)
            return 0;
    }
    /* the connection's parts */
    long vkey = version * 4 + (assumed == Py_True) * 2;
    ConnPart *c = &cc[mix(conn, vkey ^ (long)((Py_uintptr_t)dir >> 4)) % NCONN];
    if (!(c->conn == conn && c->dir == dir && c->version == version && c->assumed == assumed)) {
        PyObject *entry = PyObject_CallMethodObjArgs(fmt, S_CONN_ENTRY, ev, NULL);
        if (entry == NULL)
            return -1;
        PyObject *e_conn, *mid, *tail;
        if (!PyTuple_Check(entry) ||
            !PyArg_UnpackTuple(entry, "_conn_entry", 3, 3, &e_conn, &mid, &tail) ||
            !PyUnicode_Check(mid) || !PyUnicode_Check(tail)) {
            Py_DECREF(entry);
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "_conn_entry must return (conn, str, str)");
            return -1;
        }
        xsetref(&c->conn, Py_NewRef(conn));
        xsetref(&c->dir, Py_NewRef(dir));
        xsetref(&c->assumed, Py_NewRef(assumed));
        xsetref(&c->mid, Py_NewRef(mid));
        xsetref(&c->tail, Py_NewRef(tail));
        c->version = version;
        Py_DECREF(entry);
    }
    PubPart *pp = NULL;
    if (ack < 0) {
        pp = &pc[mix(topic, qos * 4 + (dup == Py_True) * 2 + (retain == Py_True)) % NPUB];
        if (!(pp->topic == topic && pp->qos == qos && pp->dup == dup && pp->retain == retain)) {
            PyObject *entry = PyObject_CallMethodObjArgs(fmt, S_PUB_ENTRY, p, NULL);
            if (entry == NULL)
                return -1;
            PyObject *head, *tail;
            if (!PyTuple_Check(entry) ||
                !PyArg_UnpackTuple(entry, "_pub_entry", 2, 2, &head, &tail) ||
                !PyUnicode_Check(head) || !PyUnicode_Check(tail)) {
                Py_DECREF(entry);
                PyErr_Clear();
                PyErr_SetString(PyExc_TypeError, "_pub_entry must return (str, str)");
                return -1;
            }
            xsetref(&pp->topic, Py_NewRef(topic));
            xsetref(&pp->dup, Py_NewRef(dup));
            xsetref(&pp->retain, Py_NewRef(retain));
            xsetref(&pp->head, Py_NewRef(head));
            xsetref(&pp->tail, Py_NewRef(tail));
            pp->qos = qos;
            Py_DECREF(entry);
        }
    }
    /* ts as Python's ts // 10**9 and ts % 10**9 (floor division) */
    long long sec = ts / 1000000000LL, ns = ts % 1000000000LL;
    if (ns < 0) {
        ns += 1000000000LL;
        sec -= 1;
    }
    char frac[10];
    for (int i = 8; i >= 0; i--) {
        frac[i] = (char)('0' + ns % 10);
        ns /= 10;
    }
    frac[9] = 0;
    Py_ssize_t mark = b->len;
    if (PUTS(b, "{\"frame\":") || put_ll(b, frame) || PUTS(b, ",\"ts\":") || put_ll(b, sec) ||
        PUTS(b, ".") || put(b, frac, 9) || PUTS(b, ",\"ts_ns\":") || put_ll(b, ts) ||
        put_str(b, c->mid))
        goto fail;
    if (ack < 0) {
        if (put_str(b, pp->head) || (pid_none ? PUTS(b, "null") : put_ll(b, pid)) ||
            put_str(b, pp->tail) || put_ll(b, plen) ||
            PUTS(b, ",\"client_id\":null,\"reason_code\":null,\"reason_codes\":null"))
            goto fail;
    }
    else {
        if (put_str(b, ACK_TYPE[ack]) || put_ll(b, pid) ||
            PUTS(b, ",\"topic\":null,\"payload_len\":null,\"client_id\":null,\"reason_code\":") ||
            put_ll(b, rc) || PUTS(b, ",\"reason_codes\":null"))
            goto fail;
    }
    if (put_str(b, c->tail) || put_ll(b, wire) || PUTS(b, ",\"kind\":null,\"detail\":null}\n"))
        goto fail;
    return 1;
fail:
    b->len = mark;
    if (PyErr_ExceptionMatches(PyExc_MemoryError))
        return -1;
    PyErr_Clear(); /* e.g. a topic that is not valid UTF-8 (a lone surrogate): Python decides */
    return 0;
}

PyObject *sp_jsonl_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "jsonl_batch(formatter, iterator, limit)");
        return NULL;
    }
    if (EVENT == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure_jsonl first");
        return NULL;
    }
    PyObject *fmt = args[0], *it = args[1];
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    if (!PyIter_Check(it)) {
        PyErr_SetString(PyExc_TypeError, "an iterator is needed");
        return NULL;
    }
    Buf b = {NULL, 0, 0};
    ConnPart *cc = PyMem_Calloc(NCONN, sizeof(ConnPart));
    PubPart *pc = PyMem_Calloc(NPUB, sizeof(PubPart));
    int done = 0;
    Py_ssize_t lines = 0, count = 0;
    PyObject *error = Py_NewRef(Py_None), *result = NULL;
    if (cc == NULL || pc == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    while (lines < limit) {
        PyObject *ev = PyIter_Next(it);
        if (ev == NULL) {
            if (PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_Exception))
                    goto fail; /* KeyboardInterrupt and the like: at once */
                PyObject *type, *value, *tb;
                PyErr_Fetch(&type, &value, &tb);
                PyErr_NormalizeException(&type, &value, &tb);
                if (tb != NULL)
                    PyException_SetTraceback(value, tb);
                Py_XDECREF(type);
                Py_XDECREF(tb);
                xsetref(&error, value);
            }
            done = 1;
            break;
        }
        count++;
        int r = fast_line(fmt, ev, &b, cc, pc);
        if (r == 0) {
            PyObject *line = PyObject_CallFunctionObjArgs(fmt, ev, NULL);
            if (line == NULL) {
                Py_DECREF(ev);
                goto fail;
            }
            if (line != Py_None) {
                if (!PyUnicode_Check(line)) {
                    PyErr_SetString(PyExc_TypeError, "a formatter returns str or None");
                    r = -1;
                }
                else
                    r = put_str(&b, line) < 0 ? -1 : 1;
            }
            Py_DECREF(line);
        }
        Py_DECREF(ev);
        if (r < 0)
            goto fail;
        lines += r;
    }
    PyObject *text = PyUnicode_DecodeUTF8(b.p ? b.p : "", b.len, "strict");
    if (text != NULL)
        result = Py_BuildValue("(NnON)", text, count, done ? Py_True : Py_False, error);
    else
        Py_DECREF(error);
    error = NULL;
fail:
    Py_XDECREF(error);
    for (int i = 0; cc != NULL && i < NCONN; i++) {
        Py_XDECREF(cc[i].conn); Py_XDECREF(cc[i].dir); Py_XDECREF(cc[i].assumed);
        Py_XDECREF(cc[i].mid); Py_XDECREF(cc[i].tail);
    }
    for (int i = 0; pc != NULL && i < NPUB; i++) {
        Py_XDECREF(pc[i].topic); Py_XDECREF(pc[i].dup); Py_XDECREF(pc[i].retain);
        Py_XDECREF(pc[i].head); Py_XDECREF(pc[i].tail);
    }
    PyMem_Free(cc);
    PyMem_Free(pc);
    PyMem_Free(b.p);
    return result;
}
