/* CaptureEngine: the frame loop of CapturePipeline (qosinspect/capture/pipeline.py) for the
 * common frames, and the MQTT step of CaptureDecoder (capture/decoder.py) for connections in
 * their steady state. The Python modules are the reference; this file mirrors their fast paths
 * line by line and returns every other frame to them untouched.
 *
 * run(batch, limit, next_sweep) walks the capture's records (pcap and pcapng, as
 * CaptureFile._pcap_records/_pcapng_records do; on any error or anything unusual it hands the
 * walk over to those generators, started where it stopped, and reads their records from then
 * on). For each frame it tries the pipeline's fast path: untagged Ethernet, SLL, SLL2 or
 * NULL/LOOP, IPv4 without options, unfragmented TCP, a tracked half-stream, an ACK or PSH|ACK at
 * the next expected sequence number that acknowledges nothing unseen, no sink, probe or
 * buffered segment. Such a frame updates the half-stream's counters and its bytes become either
 * a StreamData record or, with the MQTT stage on and the connection steady (CONNECT seen, sides
 * known, decoder neither failed nor resynchronising), MqttPacketEvents built here by
 * fast_packets(). Where fast_packets() stops at a packet it does not take, the rest of the bytes
 * go up as a StreamData record for the Python decoder, with the decoder state committed up to
 * that point (or, when nothing was taken, left as it was).
 *
 * A StreamData record ends the batch (the Python side may change the flow before the next
 * frame, as it does when its loop runs frame by frame).
 *
 * run() returns True when `batch` holds `limit` items (or ends with a StreamData record), None
 * at the end of the records, or the
 * record tuple (frame, ts_ns, linktype, offset, caplen, orig_len) of a frame the Python loop must
 * handle (after which it calls run() again).
 */
#include "speedups.h"

#define M32 0xFFFFFFFFLL
#define HALF32 0x80000000LL
#define RELEASE_STEP (8LL << 20)
#define MAX_CAPLEN 262144

static struct {
    PyObject *half_cls, *flow_cls, *streamdata, *interface, *conn_cls, *side_cls, *event, *c2b;
    /* HalfStream */
    Py_ssize_t h_flow, h_peer, h_direction, h_nxt_seq, h_nxt_off, h_segments, h_win, h_sink,
        h_probe, h_ooo, h_data_bytes;
    /* Flow */
    Py_ssize_t f_last_ts, f_app, f_sides_known, f_info;
    /* _Conn, _Side */
    Py_ssize_t c_c2b, c_b2c, c_first_done, c_scan_left, c_assumed;
    Py_ssize_t s_dec, s_packets, s_pending_frame;
    int ready, mqtt_ready;
} K;

PyObject *sp_configure_capture(PyObject *module, PyObject *args)
{
    PyObject *half, *flow, *sd, *iface;
    if (!PyArg_ParseTuple(args, "O!O!O!O!", &PyType_Type, &half, &PyType_Type, &flow,
                          &PyType_Type, &sd, &PyType_Type, &iface))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)sd, &PyTuple_Type) ||
        !PyType_IsSubtype((PyTypeObject *)iface, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "StreamData and Interface must be NamedTuples");
        return NULL;
    }
    if (slot_offset(half, "flow", &K.h_flow) || slot_offset(half, "peer", &K.h_peer) ||
        slot_offset(half, "direction", &K.h_direction) ||
        slot_offset(half, "nxt_seq", &K.h_nxt_seq) || slot_offset(half, "nxt_off", &K.h_nxt_off) ||
        slot_offset(half, "segments", &K.h_segments) || slot_offset(half, "win", &K.h_win) ||
        slot_offset(half, "sink", &K.h_sink) || slot_offset(half, "probe", &K.h_probe) ||
        slot_offset(half, "ooo", &K.h_ooo) || slot_offset(half, "data_bytes", &K.h_data_bytes) ||
        slot_offset(flow, "last_ts", &K.f_last_ts) || slot_offset(flow, "app", &K.f_app) ||
        slot_offset(flow, "sides_known", &K.f_sides_known) ||
        slot_offset(flow, "_info", &K.f_info))
        return NULL;
    PyObject **dst[] = {&K.half_cls, &K.flow_cls, &K.streamdata, &K.interface};
    PyObject *src[] = {half, flow, sd, iface};
    for (int i = 0; i < 4; i++) {
        Py_INCREF(src[i]);
        Py_XSETREF(*dst[i], src[i]);
    }
    K.ready = 1;
    Py_RETURN_NONE;
}

PyObject *sp_configure_mqtt_stage(PyObject *module, PyObject *args)
{
    PyObject *conn, *side, *event, *c2b;
    if (!PyArg_ParseTuple(args, "O!O!O!O", &PyType_Type, &conn, &PyType_Type, &side,
                          &PyType_Type, &event, &c2b))
        return NULL;
    if (!framing_ready() || !K.ready) {
        PyErr_SetString(PyExc_RuntimeError, "configure_framing and configure_capture first");
        return NULL;
    }
    if (!PyType_IsSubtype((PyTypeObject *)event, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "MqttPacketEvent must be a NamedTuple");
        return NULL;
    }
    if (slot_offset(conn, "c2b", &K.c_c2b) || slot_offset(conn, "b2c", &K.c_b2c) ||
        slot_offset(conn, "first_done", &K.c_first_done) ||
        slot_offset(conn, "scan_left", &K.c_scan_left) ||
        slot_offset(conn, "assumed", &K.c_assumed) || slot_offset(side, "dec", &K.s_dec) ||
        slot_offset(side, "packets", &K.s_packets) ||
        slot_offset(side, "pending_frame", &K.s_pending_frame))
        return NULL;
    PyObject **dst[] = {&K.conn_cls, &K.side_cls, &K.event, &K.c2b};
    PyObject *src[] = {conn, side, event, c2b};
    for (int i = 0; i < 4; i++) {
        Py_INCREF(src[i]);
        Py_XSETREF(*dst[i], src[i]);
    }
    K.mqtt_ready = 1;
    Py_RETURN_NONE;
}

/* --- the engine object ------------------------------------------------------------------------ */

typedef struct {
    int linktype;
    long long snaplen, mul, div, tsoff;
} Iface;

enum { WALK_PCAP, WALK_PCAPNG, WALK_PYTHON, WALK_DONE };

typedef struct {
    PyObject_HEAD
    PyObject *cap, *halves, *pyiter, *ifaces_list;
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

static void engine_release_view(Engine *e)
{
    if (e->have_view) {
        PyBuffer_Release(&e->view);
        e->have_view = 0;
    }
    e->buf = NULL;
    e->end = 0;
}

static void engine_dealloc(Engine *e)
{
    engine_release_view(e);
    Py_XDECREF(e->cap);
    Py_XDECREF(e->halves);
    Py_XDECREF(e->pyiter);
    Py_XDECREF(e->ifaces_list);
    Py_XDECREF(e->last_tuple);
    PyMem_Free(e->ifaces);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static PyObject *make_interface(long long lt, long long snap, long long mul, long long div,
                                long long tsoff)
{
    return PyObject_CallFunction(K.interface, "LLLLL", lt, snap, mul, div, tsoff);
}

/* Hand the walk to the Python generator, started at the current block. */
static int defer_walk(Engine *e)
{
    PyObject *it;
    if (e->mode == WALK_PCAP)
        it = PyObject_CallMethod(e->cap, "_pcap_records", "LLL", e->off, e->n, e->release_at);
    else
        it = PyObject_CallMethod(e->cap, "_pcapng_records", "LLsOLL", e->off, e->n,
                                 e->ng_big ? ">" : "<", e->ifaces_list, e->ng_last_ts,
                                 e->release_at);
    if (it == NULL)
        return -1;
    Py_XSETREF(e->pyiter, it);
    e->mode = WALK_PYTHON;
    return 0;
}

static int engine_init(Engine *e, PyObject *args, PyObject *kw)
{
    PyObject *cap, *halves;
    int mqtt;
    static char *kwlist[] = {"cap", "halves", "mqtt", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO!p", kwlist, &cap, &PyDict_Type, &halves,
                                     &mqtt))
        return -1;
    if (!K.ready) {
        PyErr_SetString(PyExc_RuntimeError, "configure_capture first");
        return -1;
    }
    if (e->cap != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "CaptureEngine initialised twice");
        return -1;
    }
    if (mqtt && !K.mqtt_ready) {
        PyErr_SetString(PyExc_RuntimeError, "configure_mqtt_stage first");
        return -1;
    }
    e->cap = Py_NewRef(cap);
    e->halves = Py_NewRef(halves);
    e->mqtt = mqtt;
    e->release_at = RELEASE_STEP;
    PyObject *buf = PyObject_GetAttrString(cap, "buf");
    PyObject *fmt = buf ? PyObject_GetAttrString(cap, "format") : NULL;
    if (fmt == NULL) {
        Py_XDECREF(buf);
        return -1;
    }
    int rc = PyObject_GetBuffer(buf, &e->view, PyBUF_SIMPLE);
    Py_DECREF(buf);
    if (rc < 0) {
        Py_DECREF(fmt);
        return -1;
    }
    e->have_view = 1;
    e->buf = e->view.buf;
    e->end = e->view.len;
    int is_pcap = PyUnicode_Check(fmt) && PyUnicode_CompareWithASCIIString(fmt, "pcap") == 0;
    Py_DECREF(fmt);
    if (is_pcap) {
        e->mode = WALK_PCAP;
        e->off = 24;
        if (e->end < 24)
            return defer_walk(e);
        unsigned long magic = rd32(e->buf, 0);
        switch (magic) {
        case 0xA1B2C3D4: e->big = 0; e->frac_mul = 1000; e->hdr_len = 16; break;
        case 0xD4C3B2A1: e->big = 1; e->frac_mul = 1000; e->hdr_len = 16; break;
        case 0xA1B23C4D: e->big = 0; e->frac_mul = 1; e->hdr_len = 16; break;
        case 0x4D3CB2A1: e->big = 1; e->frac_mul = 1; e->hdr_len = 16; break;
        case 0xA1B2CD34: e->big = 0; e->frac_mul = 1000; e->hdr_len = 24; break;
        case 0x34CDB2A1: e->big = 1; e->frac_mul = 1000; e->hdr_len = 24; break;
        default: return defer_walk(e);
        }
        unsigned long snaplen = rd32(e->buf + 16, e->big), network = rd32(e->buf + 20, e->big);
        e->linktype = (int)(network & 0xFFFF);
        PyObject *iface = make_interface(e->linktype, (long long)snaplen, 1, 1, 0);
        PyObject *lst = iface ? PyList_New(1) : NULL;
        if (lst == NULL) {
            Py_XDECREF(iface);
            return -1;
        }
        PyList_SET_ITEM(lst, 0, iface);
        rc = PyObject_SetAttrString(cap, "interfaces", lst);
        Py_DECREF(lst);
        return rc;
    }
    e->mode = WALK_PCAPNG;
    e->off = 0;
    e->ifaces_list = PyList_New(0);
    if (e->ifaces_list == NULL)
        return -1;
    return PyObject_SetAttrString(cap, "interfaces", e->ifaces_list);
}

/* The next record, from the C walker or the Python generator: 1 and the fields (and, for the
 * generator, the tuple in *rec), 0 at the end, -1 on error (a CaptureError from the
 * generator, typically). */
typedef struct {
    long long n, ts, off, cl, ol;
    int lt;
    PyObject *tuple; /* the record tuple when it came from Python (new reference) */
} Rec;

static int release_pages(Engine *e)
{
    PyObject *r = PyObject_CallMethod(e->cap, "_release", "L", e->off);
    if (r == NULL)
        return -1;
    long long v = PyLong_AsLongLong(r);
    Py_DECREF(r);
    if (v == -1 && PyErr_Occurred())
        return -1;
    e->release_at = v;
    return 0;
}

static int ts_from_units(const Iface *f, unsigned long long units, long long *ts)
{
    __int128 t = (__int128)units * f->mul;
    if (f->div != 1)
        t /= f->div; /* non-negative: floor */
    t += f->tsoff;
    if (t > (__int128)LLONG_MAX || t < (__int128)LLONG_MIN)
        return -1;
    *ts = (long long)t;
    return 0;
}

static int parse_idb(Engine *e, long long off, long long blen, Iface *out)
{
    const unsigned char *b = e->buf;
    int big = e->ng_big;
    out->linktype = (int)rd16(b + off + 8, big);
    out->snaplen = (long long)rd32(b + off + 12, big);
    out->mul = 1000;
    out->div = 1;
    out->tsoff = 0;
    long long opt = off + 16, stop = off + blen - 4;
    while (opt + 4 <= stop) {
        unsigned code = rd16(b + opt, big), olen = rd16(b + opt + 2, big);
        if (code == 0)
            break;
        long long val = opt + 4;
        if (val + olen > stop)
            return -1; /* an error: Python says it */
        if (code == 9 && olen >= 1) {
            unsigned v = b[val], exp = v & 0x7F;
            if (v & 0x80) {
                if (exp > 62)
                    return -1;
                out->mul = 1000000000LL;
                out->div = 1LL << exp;
            }
            else if (exp <= 9) {
                long long m = 1;
                for (unsigned i = 0; i < 9 - exp; i++)
                    m *= 10;
                out->mul = m;
                out->div = 1;
            }
            else {
                if (exp - 9 > 18)
                    return -1;
                long long d = 1;
                for (unsigned i = 0; i < exp - 9; i++)
                    d *= 10;
                out->mul = 1;
                out->div = d;
            }
        }
        else if (code == 14 && olen >= 8) {
            unsigned long long hi = rd32(b + val, big), lo = rd32(b + val + 4, big);
            long long secs = big ? (long long)(hi << 32 | lo) : (long long)(lo << 32 | hi);
            if (secs > LLONG_MAX / 1000000000LL || secs < LLONG_MIN / 1000000000LL)
                return -1;
            out->tsoff = secs * 1000000000LL;
        }
        opt = val + ((olen + 3) & ~3u);
    }
    return 0;
}

static int next_record(Engine *e, Rec *r)
{
    r->tuple = NULL;
    const unsigned char *b = e->buf;
    long long end = e->end;
    for (;;) {
        if (e->mode == WALK_DONE)
            return 0;
        if (e->mode == WALK_PYTHON) {
            PyObject *t = PyIter_Next(e->pyiter);
            if (t == NULL) {
                if (PyErr_Occurred())
                    return -1;
                e->mode = WALK_DONE;
                return 0;
            }
            r->tuple = t;
            long long v[6];
            if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 6)
                v[0] = -1;
            else
                for (int i = 0; i < 6; i++) {
                    int ovf = 0;
                    PyObject *x = PyTuple_GET_ITEM(t, i);
                    v[i] = PyLong_CheckExact(x) ? PyLong_AsLongLongAndOverflow(x, &ovf) : -1;
                    if (ovf || (v[i] == -1 && PyErr_Occurred())) {
                        PyErr_Clear();
                        v[0] = -1; /* the Python loop takes such a record */
                        break;
                    }
                }
            r->n = v[0]; r->ts = v[1]; r->lt = (int)v[2]; r->off = v[3]; r->cl = v[4];
            r->ol = v[5];
            if (v[0] < 0 || v[2] < 0 || v[2] > 0xFFFF || v[3] < 0 || v[4] < 0 ||
                v[3] > end || v[4] > end - v[3])
                r->lt = -1; /* never the fast path */
            return 1;
        }
        long long off = e->off;
        if (off >= end) {
            e->mode = WALK_DONE;
            return 0;
        }
        if (off >= e->release_at && release_pages(e) < 0)
            return -1;
        if (e->mode == WALK_PCAP) {
            long long data = off + e->hdr_len;
            if (data > end)
                goto defer;
            const unsigned char *h = b + off;
            unsigned long sec = rd32(h, e->big), frac = rd32(h + 4, e->big);
            unsigned long caplen = rd32(h + 8, e->big), orig = rd32(h + 12, e->big);
            if (caplen > MAX_CAPLEN || data + (long long)caplen > end)
                goto defer;
            e->n += 1;
            r->n = e->n;
            r->ts = (long long)sec * 1000000000LL + (long long)frac * e->frac_mul;
            r->lt = e->linktype;
            r->off = data;
            r->cl = (long long)caplen;
            r->ol = orig > caplen ? (long long)orig : (long long)caplen;
            e->off = data + (long long)caplen;
            return 1;
        }
        /* pcapng */
        if (off + 12 > end)
            goto defer;
        unsigned long btype = rd32(b + off, 0);
        int big = e->ng_big;
        if (btype == 0x0A0D0D0A) {
            unsigned long bom = rd32(b + off + 8, 0);
            if (bom == 0x1A2B3C4D)
                big = 0;
            else if (bom == 0x4D3C2B1A)
                big = 1;
            else
                goto defer;
        }
        btype = rd32(b + off, big);
        long long blen = (long long)rd32(b + off + 4, big);
        long long nxt = off + blen;
        if (blen < 12 || blen % 4 || nxt > end || (long long)rd32(b + nxt - 4, big) != blen)
            goto defer;
        if (btype == 0x0A0D0D0A) {
            PyObject *lst = PyList_New(0);
            if (lst == NULL || PyObject_SetAttrString(e->cap, "interfaces", lst) < 0) {
                Py_XDECREF(lst);
                return -1;
            }
            Py_XSETREF(e->ifaces_list, lst);
            e->ng_big = big;
            e->nifaces = 0;
        }
        if (btype == 6 || btype == 2) {
            if (blen < 32)
                goto defer;
            unsigned long if_id, hi, lo, caplen, orig;
            const unsigned char *p = b + off + 8;
            if (btype == 6) {
                if_id = rd32(p, big); hi = rd32(p + 4, big); lo = rd32(p + 8, big);
                caplen = rd32(p + 12, big); orig = rd32(p + 16, big);
            }
            else {
                if_id = rd16(p, big); hi = rd32(p + 4, big); lo = rd32(p + 8, big);
                caplen = rd32(p + 12, big); orig = rd32(p + 16, big);
            }
            if ((long long)caplen > blen - 32 || (Py_ssize_t)if_id >= e->nifaces)
                goto defer;
            long long ts;
            if (ts_from_units(&e->ifaces[if_id], (unsigned long long)hi << 32 | lo, &ts) < 0)
                goto defer;
            e->n += 1;
            e->ng_last_ts = ts;
            r->n = e->n;
            r->ts = ts;
            r->lt = e->ifaces[if_id].linktype;
            r->off = off + 28;
            r->cl = (long long)caplen;
            r->ol = orig > caplen ? (long long)orig : (long long)caplen;
            e->off = nxt;
            return 1;
        }
        if (btype == 3) {
            if (e->nifaces == 0)
                goto defer;
            unsigned long orig = rd32(b + off + 8, big);
            long long caplen = (long long)orig < blen - 16 ? (long long)orig : blen - 16;
            if (e->ifaces[0].snaplen && e->ifaces[0].snaplen < caplen)
                caplen = e->ifaces[0].snaplen;
            e->n += 1;
            r->n = e->n;
            r->ts = e->ng_last_ts;
            r->lt = e->ifaces[0].linktype;
            r->off = off + 12;
            r->cl = caplen;
            r->ol = (long long)orig;
            e->off = nxt;
            return 1;
        }
        if (btype == 1) {
            Iface f;
            if (blen < 20 || parse_idb(e, off, blen, &f) < 0)
                goto defer;
            if (e->nifaces == e->cap_ifaces) {
                Py_ssize_t c = e->cap_ifaces ? e->cap_ifaces * 2 : 4;
                Iface *grown = PyMem_Realloc(e->ifaces, c * sizeof(Iface));
                if (grown == NULL) {
                    PyErr_NoMemory();
                    return -1;
                }
                e->ifaces = grown;
                e->cap_ifaces = c;
            }
            PyObject *iface = make_interface(f.linktype, f.snaplen, f.mul, f.div, f.tsoff);
            if (iface == NULL || PyList_Append(e->ifaces_list, iface) < 0) {
                Py_XDECREF(iface);
                return -1;
            }
            Py_DECREF(iface);
            e->ifaces[e->nifaces++] = f;
        }
        e->off = nxt;
        continue;
    defer:
        if (defer_walk(e) < 0)
            return -1;
    }
}

/* --- the fast path of one frame ----------------------------------------------------------------- */

typedef struct {
    PyObject *batch, *info, *dir, *ts, *frame, *first, *version, *assumed;
    long long count;
} EventSink;

static int emit_event(void *ctx, PyObject *packet, Py_ssize_t size)
{
    EventSink *s = ctx;
    PyObject *ev = new_namedtuple((PyTypeObject *)K.event, 9);
    PyObject *sz = PyLong_FromSsize_t(size);
    if (ev == NULL || sz == NULL) {
        Py_XDECREF(ev);
        Py_XDECREF(sz);
        Py_DECREF(packet);
        return -1;
    }
    PyTuple_SET_ITEM(ev, 0, Py_NewRef(s->ts));
    PyTuple_SET_ITEM(ev, 1, Py_NewRef(s->info));
    PyTuple_SET_ITEM(ev, 2, Py_NewRef(s->dir));
    PyTuple_SET_ITEM(ev, 3, packet);
    PyTuple_SET_ITEM(ev, 4, sz);
    PyTuple_SET_ITEM(ev, 5, Py_NewRef(s->frame));
    PyTuple_SET_ITEM(ev, 6, Py_NewRef(s->first));
    PyTuple_SET_ITEM(ev, 7, Py_NewRef(s->version));
    PyTuple_SET_ITEM(ev, 8, Py_NewRef(s->assumed));
    untrack(ev);
    s->first = s->frame; /* packets after the first begin in this frame */
    s->count++;
    int rc = PyList_Append(s->batch, ev);
    Py_DECREF(ev);
    return rc;
}

/* A StreamData record ends the batch: the Python code that consumes it may change the flow
 * (its sides, its decoder state), and the frames after it must see that, as they do when the
 * Python loop runs frame by frame. */
static int streamdata_emitted;

static int emit_streamdata(PyObject *batch, PyObject *flow, PyObject *dir, PyObject *frame,
                           PyObject *ts, const unsigned char *data, Py_ssize_t len)
{
    streamdata_emitted = 1;
    PyObject *rec = new_namedtuple((PyTypeObject *)K.streamdata, 5);
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)data, len);
    if (rec == NULL || bytes == NULL) {
        Py_XDECREF(rec);
        Py_XDECREF(bytes);
        return -1;
    }
    PyTuple_SET_ITEM(rec, 0, Py_NewRef(flow));
    PyTuple_SET_ITEM(rec, 1, Py_NewRef(dir));
    PyTuple_SET_ITEM(rec, 2, Py_NewRef(frame));
    PyTuple_SET_ITEM(rec, 3, Py_NewRef(ts));
    PyTuple_SET_ITEM(rec, 4, bytes);
    untrack(rec);
    int rc = PyList_Append(batch, rec);
    Py_DECREF(rec);
    return rc;
}

/* The MQTT step of CaptureDecoder for new in-order bytes of a steady connection, else a
 * StreamData record for it. 0 or -1 (exception). */
static int deliver(Engine *e, PyObject *batch, PyObject *flow, PyObject *dir, long long frame_no,
                   PyObject *frame, PyObject *ts, const unsigned char *data, Py_ssize_t len)
{
    if (!e->mqtt)
        return emit_streamdata(batch, flow, dir, frame, ts, data, len);
    PyObject *app = SLOT(flow, K.f_app), *info = SLOT(flow, K.f_info);
    if (app == NULL || !Py_IS_TYPE(app, (PyTypeObject *)K.conn_cls) || info == NULL ||
        info == Py_None || slot_bool(flow, K.f_sides_known) != 1 ||
        slot_bool(app, K.c_first_done) != 1)
        return emit_streamdata(batch, flow, dir, frame, ts, data, len);
    long long scan_left;
    if (slot_ll(app, K.c_scan_left, &scan_left) || scan_left)
        return emit_streamdata(batch, flow, dir, frame, ts, data, len);
    PyObject *side = SLOT(app, dir == K.c2b ? K.c_c2b : K.c_b2c);
    PyObject *assumed = SLOT(app, K.c_assumed);
    if (side == NULL || !Py_IS_TYPE(side, (PyTypeObject *)K.side_cls) || assumed == NULL)
        return emit_streamdata(batch, flow, dir, frame, ts, data, len);
    PyObject *dec = SLOT(side, K.s_dec);
    if (dec == NULL || !PyObject_TypeCheck(dec, (PyTypeObject *)DEC.cls))
        return emit_streamdata(batch, flow, dir, frame, ts, data, len);
    long long pend, need, offset, version, max_size, packets;
    PyObject *chunks = SLOT(dec, DEC.chunks), *topics = SLOT(dec, DEC.topics);
    PyObject *ver = SLOT(dec, DEC.version), *pending_frame = SLOT(side, K.s_pending_frame);
    if (SLOT(dec, DEC.failed) != Py_None || slot_bool(dec, DEC.resync) != 0 ||
        slot_ll(dec, DEC.pending, &pend) || slot_ll(dec, DEC.need, &need) ||
        slot_ll(dec, DEC.offset, &offset) || slot_ll(dec, DEC.version, &version) ||
        slot_ll(dec, DEC.max_packet_size, &max_size) || slot_ll(side, K.s_packets, &packets) ||
        pending_frame == NULL || chunks == NULL || !PyList_CheckExact(chunks) ||
        topics == NULL || !PyDict_CheckExact(topics))
        return emit_streamdata(batch, flow, dir, frame, ts, data, len);

    PyObject *joined = NULL;
    const unsigned char *buf = data;
    Py_ssize_t n = len;
    if (PyList_GET_SIZE(chunks) > 0) {
        if (pend + len < need) {
            /* still short of the pending packet: keep the bytes (StreamDecoder.feed does) */
            PyObject *copy = PyBytes_FromStringAndSize((const char *)data, len);
            if (copy == NULL || PyList_Append(chunks, copy) < 0) {
                Py_XDECREF(copy);
                return -1;
            }
            Py_DECREF(copy);
            return slot_set_ll(dec, DEC.pending, pend + len);
        }
        Py_ssize_t total = 0;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(chunks); i++) {
            PyObject *c = PyList_GET_ITEM(chunks, i);
            if (!PyBytes_CheckExact(c))
                return emit_streamdata(batch, flow, dir, frame, ts, data, len);
            total += PyBytes_GET_SIZE(c);
        }
        joined = PyBytes_FromStringAndSize(NULL, total + len);
        if (joined == NULL)
            return -1;
        char *w = PyBytes_AS_STRING(joined);
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(chunks); i++) {
            PyObject *c = PyList_GET_ITEM(chunks, i);
            memcpy(w, PyBytes_AS_STRING(c), PyBytes_GET_SIZE(c));
            w += PyBytes_GET_SIZE(c);
        }
        memcpy(w, data, len);
        buf = (const unsigned char *)PyBytes_AS_STRING(joined);
        n = total + len;
    }
    EventSink sink = {batch, info, dir, ts, frame, pend ? pending_frame : frame, ver, assumed, 0};
    Emitter em = {emit_event, &sink};
    int why;
    Py_ssize_t got_need, rc = 0;
    Py_ssize_t pos = fast_packets(buf, 0, n, topics, version >= 5, max_size, &em, &why,
                                  &got_need);
    if (why == STOP_ERROR) {
        rc = -1;
        goto out;
    }
    if (why == STOP_OTHER && sink.count == 0) {
        /* nothing taken: the Python decoder gets the record as it was */
        rc = emit_streamdata(batch, flow, dir, frame, ts, data, len);
        goto out;
    }
    /* commit what StreamDecoder.feed would leave behind at this point */
    PyObject *fresh = PyList_New(0);
    if (fresh == NULL) {
        rc = -1;
        goto out;
    }
    if (why != STOP_OTHER && pos < n) {
        PyObject *rest = PyBytes_FromStringAndSize((const char *)buf + pos, n - pos);
        if (rest == NULL || PyList_Append(fresh, rest) < 0) {
            Py_XDECREF(rest);
            Py_DECREF(fresh);
            rc = -1;
            goto out;
        }
        Py_DECREF(rest);
    }
    slot_set(dec, DEC.chunks, fresh);
    long long left = why == STOP_OTHER ? 0 : n - pos;
    if (slot_set_ll(dec, DEC.pending, left) < 0 ||
        slot_set_ll(dec, DEC.need, why == STOP_INCOMPLETE ? got_need : 0) < 0 ||
        slot_set_ll(dec, DEC.offset, offset + pos) < 0 ||
        slot_set_ll(side, K.s_packets, packets + sink.count) < 0) {
        rc = -1;
        goto out;
    }
    e->packets += sink.count;
    if (left && (!pend || left <= len))
        slot_set(side, K.s_pending_frame, Py_NewRef(frame));
    if (why == STOP_OTHER)
        rc = emit_streamdata(batch, flow, dir, frame, ts, buf + pos, n - pos);
out:
    Py_XDECREF(joined);
    (void)frame_no;
    return (int)rc;
}

/* 1: handled here; 0: the Python loop must take the frame; -1: exception. */
static int fast_frame(Engine *e, const Rec *r, long long next_sweep, PyObject *batch)
{
    if (r->ts >= next_sweep || r->lt < 0)
        return 0;
    long long lhl, tag;
    const unsigned char *f = e->buf + r->off;
    switch (r->lt) {
    case 1: lhl = 14; break;    /* Ethernet */
    case 113: lhl = 16; break;  /* Linux cooked */
    case 276: lhl = 20; break;  /* Linux cooked v2 */
    case 0: case 108: lhl = 4; break; /* NULL, LOOP */
    default: return 0;
    }
    if (r->cl < lhl + 40 || r->off + r->cl > e->end)
        return 0;
    switch (r->lt) {
    case 1: tag = rd16(f + 12, 1) == 0x0800; break;
    case 113: tag = rd16(f + 14, 1) == 0x0800; break;
    case 276: tag = rd16(f, 1) == 0x0800; break;
    default: { unsigned long t = rd32(f, 1); tag = t == 2 || t == 0x02000000; }
    }
    const unsigned char *ip = f + lhl;
    if (!tag || ip[0] != 0x45 || ip[9] != 6 || (rd16(ip + 6, 1) & 0x3FFF))
        return 0;
    long long total = rd16(ip + 2, 1), hl = (long long)(ip[32] >> 4) << 2;
    long long pstart = lhl + 20 + hl, wend = lhl + total; /* relative to the frame */
    if (!(hl >= 20 && pstart <= wend && wend <= r->cl))
        return 0;
    /* halves.get(addresses and ports as in the headers), through the run's small cache */
    const unsigned char *k = ip + 12;
    unsigned slot = (unsigned)(k[3] ^ k[7] ^ k[9] ^ (k[11] << 1) ^ (k[8] << 3)) & 63;
    PyObject *h = e->seen[slot].h;
    if (h == NULL || memcmp(e->seen[slot].key, k, 12) != 0) {
        PyObject *key = PyBytes_FromStringAndSize((const char *)k, 12);
        if (key == NULL)
            return -1;
        h = PyDict_GetItemWithError(e->halves, key); /* borrowed */
        Py_DECREF(key);
        if (h == NULL)
            return PyErr_Occurred() ? -1 : 0;
        memcpy(e->seen[slot].key, k, 12);
        e->seen[slot].h = h;
    }
    if (!Py_IS_TYPE(h, (PyTypeObject *)K.half_cls))
        return 0;
    PyObject *flow = SLOT(h, K.h_flow), *p = SLOT(h, K.h_peer), *dir = SLOT(h, K.h_direction);
    if (flow == NULL || !Py_IS_TYPE(flow, (PyTypeObject *)K.flow_cls) || p == NULL ||
        !Py_IS_TYPE(p, (PyTypeObject *)K.half_cls) || dir == NULL)
        return 0;
    if (slot_set_ll(flow, K.f_last_ts, r->ts) < 0) /* the Python loop sets it too: idempotent */
        return -1;
    int flags = ip[33];
    long long seq = (long long)rd32(ip + 24, 1), ack = (long long)rd32(ip + 28, 1);
    long long win = rd16(ip + 34, 1), nxt_seq, p_nxt_seq, segments, nxt_off, data_bytes, p_win;
    if (!(flags == 0x10 || flags == 0x18) || slot_ll(h, K.h_nxt_seq, &nxt_seq) || seq != nxt_seq ||
        slot_ll(p, K.h_nxt_seq, &p_nxt_seq) || slot_ll(h, K.h_segments, &segments))
        return 0;
    long long d = (ack - p_nxt_seq) & M32;
    if (d && d < HALF32)
        return 0;
    long long plen = wend - pstart;
    if (plen == 0) {
        if (slot_set_ll(h, K.h_segments, segments + 1) < 0 || slot_set_ll(h, K.h_win, win) < 0)
            return -1;
        return 1;
    }
    PyObject *ooo = SLOT(h, K.h_ooo);
    if (SLOT(h, K.h_sink) != Py_None || SLOT(h, K.h_probe) != Py_None || ooo == NULL ||
        !PyList_CheckExact(ooo) || PyList_GET_SIZE(ooo) != 0 ||
        slot_ll(h, K.h_nxt_off, &nxt_off) || slot_ll(h, K.h_data_bytes, &data_bytes) ||
        slot_ll(p, K.h_win, &p_win) || (plen == 1 && !p_win))
        return 0;
    if (slot_set_ll(h, K.h_segments, segments + 1) < 0 || slot_set_ll(h, K.h_win, win) < 0 ||
        slot_set_ll(h, K.h_nxt_seq, (seq + plen) & M32) < 0 ||
        slot_set_ll(h, K.h_nxt_off, nxt_off + plen) < 0 ||
        slot_set_ll(h, K.h_data_bytes, data_bytes + plen) < 0)
        return -1;
    Py_INCREF(flow);
    Py_INCREF(dir);
    PyObject *frame = PyLong_FromLongLong(r->n), *ts = PyLong_FromLongLong(r->ts);
    int rc = -1;
    if (frame != NULL && ts != NULL)
        rc = deliver(e, batch, flow, dir, r->n, frame, ts, f + pstart, (Py_ssize_t)plen);
    Py_XDECREF(frame);
    Py_XDECREF(ts);
    Py_DECREF(flow);
    Py_DECREF(dir);
    return rc < 0 ? -1 : 1;
}

static PyObject *record_tuple(const Rec *r)
{
    if (r->tuple != NULL)
        return Py_NewRef(r->tuple);
    return Py_BuildValue("(LLiLLL)", r->n, r->ts, r->lt, r->off, r->cl, r->ol);
}

static PyObject *engine_run(Engine *e, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyList_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "run(batch: list, limit, next_sweep)");
        return NULL;
    }
    PyObject *batch = args[0];
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    /* Python's next sweep may be beyond 64 bits (a timestamp near the top): clamped, a frame
     * at the bound goes to the Python loop, which compares exactly. */
    int ovf = 0;
    long long next_sweep = PyLong_AsLongLongAndOverflow(args[2], &ovf);
    if (next_sweep == -1 && PyErr_Occurred())
        return NULL;
    if (ovf)
        next_sweep = ovf > 0 ? LLONG_MAX : LLONG_MIN;
    if (e->cap == NULL || (!e->have_view && e->mode != WALK_DONE)) {
        PyErr_SetString(PyExc_ValueError, "CaptureEngine is closed");
        return NULL;
    }
    Py_INCREF(e); /* callbacks into Python cannot free us meanwhile */
    for (int i = 0; i < 64; i++)
        e->seen[i].h = NULL;
    PyObject *result = NULL;
    while (PyList_GET_SIZE(batch) < limit) {
        Rec r;
        int got = next_record(e, &r);
        if (got < 0)
            goto done;
        if (got == 0) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        e->frames = r.n;
        e->last_ts = r.ts;
        e->position = r.off;
        if (r.lt < 0 && r.tuple != NULL) {
            Py_INCREF(r.tuple);
            Py_XSETREF(e->last_tuple, r.tuple);
        }
        else
            Py_CLEAR(e->last_tuple);
        streamdata_emitted = 0;
        int fast = fast_frame(e, &r, next_sweep, batch);
        if (fast == 1) {
            Py_XDECREF(r.tuple);
            if (streamdata_emitted)
                break;
            continue;
        }
        if (fast < 0) {
            Py_XDECREF(r.tuple);
            goto done;
        }
        result = record_tuple(&r);
        Py_XDECREF(r.tuple);
        goto done;
    }
    result = Py_NewRef(Py_True);
done:
    Py_DECREF(e);
    return result;
}

static PyObject *engine_close(Engine *e, PyObject *unused)
{
    engine_release_view(e);
    e->mode = WALK_DONE;
    Py_CLEAR(e->pyiter);
    Py_RETURN_NONE;
}

static PyMethodDef engine_methods[] = {
    {"run", (PyCFunction)(void (*)(void))engine_run, METH_FASTCALL,
     "run(batch, limit, next_sweep) -> True | None | record (see the module docstring)"},
    {"close", (PyCFunction)engine_close, METH_NOARGS, "Release the capture's buffer."},
    {NULL, NULL, 0, NULL},
};

static PyObject *last_field(Engine *e, int i, long long v)
{
    PyObject *t = e->last_tuple;
    if (t != NULL && PyTuple_Check(t) && PyTuple_GET_SIZE(t) > i)
        return Py_NewRef(PyTuple_GET_ITEM(t, i));
    return PyLong_FromLongLong(v);
}

static PyObject *get_frames(Engine *e, void *c) { return last_field(e, 0, e->frames); }
static PyObject *get_last_ts(Engine *e, void *c) { return last_field(e, 1, e->last_ts); }
static PyObject *get_position(Engine *e, void *c) { return last_field(e, 3, e->position); }

static PyGetSetDef engine_getset[] = {
    {"frames", (getter)get_frames, NULL, "number of the last frame read", NULL},
    {"last_ts", (getter)get_last_ts, NULL, "its timestamp", NULL},
    {"position", (getter)get_position, NULL, "its offset in the file", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef engine_members[] = {
    {"packets", T_LONGLONG, offsetof(Engine, packets), READONLY,
     "MQTT packet events built by the engine"},
    {NULL, 0, 0, 0, NULL},
};

PyTypeObject CaptureEngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "qosinspect._speedups.CaptureEngine",
    .tp_basicsize = sizeof(Engine),
    .tp_dealloc = (destructor)engine_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "CaptureEngine(cap, halves, mqtt): the fast frame loop (see capture.c).",
    .tp_methods = engine_methods,
    .tp_members = engine_members,
    .tp_getset = engine_getset,
    .tp_init = (initproc)engine_init,
    .tp_new = PyType_GenericNew,
};
