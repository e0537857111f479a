/* CaptureEngine: the frame loop of CapturePipeline (qosinspect/capture/pipeline.py) for the
 * common frames, and the MQTT step of CaptureDecoder (capture/decoder.py) for connections in
 * their steady state. The Python modules are the reference; this file mirrors their fast paths
 * line by line and returns every other frame to them untouched.
 *
 * run(batch, limit, next_sweep) walks the capture's records (walk.c) and for each frame it tries the pipeline's fast path: untagged Ethernet, SLL, SLL2 or
 * NULL/LOOP, IPv4 without options, unfragmented TCP, a tracked half-stream, an ACK or PSH|ACK at
 * the next expected sequence number that acknowledges nothing unseen, no sink, probe or
 * buffered segment, in the plain case of the TCP analysis (both directions' `plain`, a
 * window, a pure ACK moving the ACK number: nothing Wireshark would flag; the analysis' state
 * gets the updates tcp_analysis.py lists). Such a frame updates the half-stream's counters and its bytes become either
 * a StreamData record or, with the MQTT stage on and the connection steady (CONNECT seen, sides
 * known, decoder neither failed nor resynchronising), MqttPacketEvents built here by
 * fast_packets(). Where fast_packets() stops at a packet it does not take, the rest of the bytes
 * go up as a StreamData record for the Python decoder, with the decoder state committed up to
 * that point (or, when nothing was taken, left as it was).
 *
 * A StreamData record ends the batch (the Python side may change the flow before the next
 * frame, as it does when its loop runs frame by frame).
 *
 * CaptureEngine(cap, halves, mqtt, *, resume=None, stream=False, on_frame=None): resume,
 * stream and on_frame walk a piece of a stream (capture/stream.py, walk.c).
 *
 * run() returns True when `batch` holds `limit` items (or ends with a StreamData record), None
 * at the end of the records, or the record tuple (frame, ts_ns, linktype, offset, caplen,
 * orig_len) of a frame the Python loop must handle (after which it calls run() again).
 */
#include "engine.h"

#define M32 0xFFFFFFFFLL
#define HALF32 0x80000000LL

typedef struct {
    PyObject *half_cls, *flow_cls, *streamdata, *interface, *conn_cls, *side_cls, *event, *c2b;
    /* HalfStream */
    Py_ssize_t h_flow, h_peer, h_direction, h_nxt_seq, h_nxt_off, h_segments, h_win, h_sink,
        h_probe, h_ooo, h_data_bytes;
    /* HalfStream's TCP analysis state (capture/tcp_analysis.py TcpDirState) */
    Py_ssize_t h_plain, h_nextseq, h_maxseq, h_nextseqtime, h_lastack, h_lastacktime;
    /* Flow */
    Py_ssize_t f_last_ts, f_app, f_sides_known, f_info;
    /* _Conn, _Side */
    Py_ssize_t c_c2b, c_b2c, c_first_done, c_scan_left, c_assumed;
    Py_ssize_t s_dec, s_packets, s_pending_frame, s_pending_ts;
    /* the allocators of StreamData and MqttPacketEvent */
    allocfunc streamdata_alloc, event_alloc;
    int ready, mqtt_ready;
} Classes;
static Classes K;
static PyObject *ZERO; /* the int 0: ack_ts of a packet that began in the frame completing it */

PyObject *sp_configure_capture(PyObject *module, PyObject *args)
{
    PyObject *half, *flow, *sd, *iface;
    if (!PyArg_ParseTuple(args, "O!O!O!O!", &PyType_Type, &half, &PyType_Type, &flow,
                          &PyType_Type, &sd, &PyType_Type, &iface))
        return NULL;
    /* offsets into a copy, committed when all are found: a failed call leaves K as it was */
    Classes k = K;
    if ((k.streamdata_alloc = tuple_alloc(sd, "StreamData")) == NULL ||
        tuple_alloc(iface, "Interface") == NULL)
        return NULL;
    if (slot_offset(half, "flow", &k.h_flow) || slot_offset(half, "peer", &k.h_peer) ||
        slot_offset(half, "direction", &k.h_direction) ||
        slot_offset(half, "nxt_seq", &k.h_nxt_seq) || slot_offset(half, "nxt_off", &k.h_nxt_off) ||
        slot_offset(half, "segments", &k.h_segments) || slot_offset(half, "win", &k.h_win) ||
        slot_offset(half, "sink", &k.h_sink) || slot_offset(half, "probe", &k.h_probe) ||
        slot_offset(half, "ooo", &k.h_ooo) ||
        slot_offset(half, "plain", &k.h_plain) || slot_offset(half, "nextseq", &k.h_nextseq) ||
        slot_offset(half, "maxseqtobeacked", &k.h_maxseq) ||
        slot_offset(half, "nextseqtime", &k.h_nextseqtime) ||
        slot_offset(half, "lastack", &k.h_lastack) ||
        slot_offset(half, "lastacktime", &k.h_lastacktime) ||
        slot_offset(half, "data_bytes", &k.h_data_bytes) ||
        slot_offset(flow, "last_ts", &k.f_last_ts) || slot_offset(flow, "app", &k.f_app) ||
        slot_offset(flow, "sides_known", &k.f_sides_known) ||
        slot_offset(flow, "_info", &k.f_info))
        return NULL;
    K = k;
    PyObject **dst[] = {&K.half_cls, &K.flow_cls, &K.streamdata, &K.interface};
    PyObject *src[] = {half, flow, sd, iface};
    for (int i = 0; i < 4; i++)
        xsetref(dst[i], Py_NewRef(src[i]));
    INTERFACE_CLS = K.interface; /* for walk.c (K holds the reference) */
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
    Classes k = K;
    if ((k.event_alloc = tuple_alloc(event, "MqttPacketEvent")) == NULL)
        return NULL;
    if (slot_offset(conn, "c2b", &k.c_c2b) || slot_offset(conn, "b2c", &k.c_b2c) ||
        slot_offset(conn, "first_done", &k.c_first_done) ||
        slot_offset(conn, "scan_left", &k.c_scan_left) ||
        slot_offset(conn, "assumed", &k.c_assumed) || slot_offset(side, "dec", &k.s_dec) ||
        slot_offset(side, "packets", &k.s_packets) ||
        slot_offset(side, "pending_frame", &k.s_pending_frame) ||
        slot_offset(side, "pending_ts", &k.s_pending_ts))
        return NULL;
    if (ZERO == NULL && (ZERO = PyLong_FromLong(0)) == NULL)
        return NULL;
    K = k;
    PyObject **dst[] = {&K.conn_cls, &K.side_cls, &K.event, &K.c2b};
    PyObject *src[] = {conn, side, event, c2b};
    for (int i = 0; i < 4; i++)
        xsetref(dst[i], Py_NewRef(src[i]));
    K.mqtt_ready = 1;
    Py_RETURN_NONE;
}

/* --- the engine object ------------------------------------------------------------------------ */

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
    Py_XDECREF(e->notes);
    Py_XDECREF(e->last_tuple);
    Py_XDECREF(e->on_frame);
    PyMem_Free(e->ifaces);
    PyTypeObject *tp = Py_TYPE((PyObject *)e);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(e);
    Py_DECREF(tp); /* an instance of a heap type holds a reference to it */
}


static int engine_init(Engine *e, PyObject *args, PyObject *kw)
{
    PyObject *cap, *halves, *resume = Py_None, *on_frame = Py_None;
    int mqtt, stream = 0;
    static char *kwlist[] = {"cap", "halves", "mqtt", "resume", "stream", "on_frame", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO!p|$OpO", kwlist, &cap, &PyDict_Type,
                                     &halves, &mqtt, &resume, &stream, &on_frame))
        return -1;
    if (on_frame != Py_None && !PyCallable_Check(on_frame)) {
        PyErr_SetString(PyExc_TypeError, "on_frame must be callable or None");
        return -1;
    }
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
    e->notes = PyObject_GetAttrString(cap, "clock_notes");
    if (e->notes == NULL || !PyList_Check(e->notes)) {
        Py_CLEAR(e->notes);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "cap.clock_notes must be a list");
        return -1;
    }
    e->cap = Py_NewRef(cap);
    e->halves = Py_NewRef(halves);
    e->mqtt = mqtt;
    e->stream = stream;
    e->on_frame = on_frame == Py_None ? NULL : Py_NewRef(on_frame);
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
    rc = walk_init(e, fmt, resume);
    Py_DECREF(fmt);
    return rc;
}

/* --- the fast path of one frame ----------------------------------------------------------------- */

typedef struct {
    PyObject *batch, *info, *dir, *ts, *frame, *first, *version, *assumed, *first_ts, *ack_ts;
    long long count;
} EventSink;

static int emit_event(void *ctx, PyObject *packet, Py_ssize_t size)
{
    EventSink *s = ctx;
    PyObject *items[11] = {Py_NewRef(s->ts), Py_NewRef(s->info), Py_NewRef(s->dir), packet,
                           PyLong_FromSsize_t(size), Py_NewRef(s->frame), Py_NewRef(s->first),
                           Py_NewRef(s->version), Py_NewRef(s->assumed),
                           Py_NewRef(s->first_ts), Py_NewRef(s->ack_ts)};
    PyObject *ev = new_namedtuple(K.event, K.event_alloc, 11, items);
    if (ev == NULL)
        return -1;
    /* packets after the first begin in this frame (decoder.py: first, first_ts, ack_ts) */
    s->first = s->frame;
    s->first_ts = s->ts;
    s->ack_ts = ZERO;
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
    PyObject *items[5] = {Py_NewRef(flow), Py_NewRef(dir), Py_NewRef(frame), Py_NewRef(ts),
                          PyBytes_FromStringAndSize((const char *)data, len)};
    PyObject *rec = new_namedtuple(K.streamdata, K.streamdata_alloc, 5, items);
    if (rec == NULL)
        return -1;
    int rc = PyList_Append(batch, rec);
    Py_DECREF(rec);
    return rc;
}

/* The MQTT step of CaptureDecoder for new in-order bytes of a steady connection, else a
 * StreamData record for it. 0 or -1 (exception). */
static int deliver(Engine *e, PyObject *batch, PyObject *flow, PyObject *dir, PyObject *frame,
                   PyObject *ts, PyObject *peer, const unsigned char *data, Py_ssize_t len)
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
    PyObject *pending_ts = SLOT(side, K.s_pending_ts), *ack_time = SLOT(peer, K.h_lastacktime);
    if (SLOT(dec, DEC.failed) != Py_None || slot_bool(dec, DEC.resync) != 0 ||
        slot_ll(dec, DEC.pending, &pend) || slot_ll(dec, DEC.need, &need) ||
        slot_ll(dec, DEC.offset, &offset) || slot_ll(dec, DEC.version, &version) ||
        slot_ll(dec, DEC.max_packet_size, &max_size) || slot_ll(side, K.s_packets, &packets) ||
        pending_frame == NULL || pending_ts == NULL || ack_time == NULL || chunks == NULL ||
        (chunks != Py_None && !PyList_CheckExact(chunks)) || topics == NULL ||
        (topics != Py_None && !PyDict_CheckExact(topics)))
        return emit_streamdata(batch, flow, dir, frame, ts, data, len);

    PyObject *joined = NULL;
    const unsigned char *buf = data;
    Py_ssize_t n = len;
    if (chunks != Py_None && PyList_Size(chunks) > 0) {
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
        int got = join_chunks(chunks, data, len, &joined);
        if (got < 0)
            return -1;
        if (got > 0)
            return emit_streamdata(batch, flow, dir, frame, ts, data, len);
        buf = (const unsigned char *)PyBytes_AsString(joined);
        n = PyBytes_Size(joined);
    }
    /* as decoder.py: a packet begun in an earlier frame carries that frame's time and when its
     * receiver last ACKed */
    int spans = pend && PyObject_RichCompareBool(pending_frame, frame, Py_NE) == 1;
    EventSink sink = {batch, info, dir, ts, frame, pend ? pending_frame : frame, ver, assumed,
                      pend ? pending_ts : ts, spans ? ack_time : ZERO, 0};
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
    /* commit what StreamDecoder.feed would leave behind at this point (None: no bytes held,
     * as the Python code leaves it) */
    PyObject *fresh = Py_NewRef(Py_None);
    if (why != STOP_OTHER && pos < n) {
        PyObject *rest = PyBytes_FromStringAndSize((const char *)buf + pos, n - pos);
        Py_DECREF(fresh);
        fresh = rest == NULL ? NULL : PyList_New(1);
        if (fresh == NULL) {
            Py_XDECREF(rest);
            rc = -1;
            goto out;
        }
        if (PyList_SetItem(fresh, 0, rest) < 0) { /* steals rest */
            Py_DECREF(fresh);
            rc = -1;
            goto out;
        }
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
    if (left && (!pend || left <= len)) {
        slot_set(side, K.s_pending_frame, Py_NewRef(frame));
        slot_set(side, K.s_pending_ts, Py_NewRef(ts));
    }
    if (why == STOP_OTHER)
        rc = emit_streamdata(batch, flow, dir, frame, ts, buf + pos, n - pos);
out:
    Py_XDECREF(joined);
    return (int)rc;
}

/* h.win = win, without a new object when it did not change (most segments) */
static int set_win(PyObject *h, long long win)
{
    long long old;
    if (slot_ll(h, K.h_win, &old) == 0 && old == win)
        return 0;
    return slot_set_ll(h, K.h_win, win);
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
    /* the plain case of the TCP analysis (tcp_analysis.py): both directions plain, the segment
     * at the next sequence number it expects, a window, nothing unseen acknowledged */
    long long nextseq, p_nextseq, lastack;
    if (!win || SLOT(h, K.h_plain) != Py_True || SLOT(p, K.h_plain) != Py_True ||
        slot_ll(h, K.h_nextseq, &nextseq) || seq != nextseq ||
        slot_ll(p, K.h_nextseq, &p_nextseq) || slot_ll(h, K.h_lastack, &lastack))
        return 0;
    d = (ack - p_nextseq) & M32;
    if (d && d < HALF32)
        return 0;
    long long plen = wend - pstart;
    if (plen == 0) {
        if (ack == lastack) /* a duplicate ACK, a window update ...: the analysis decides */
            return 0;
        if (slot_set_ll(h, K.h_segments, segments + 1) < 0 || set_win(h, win) < 0 ||
            slot_set_ll(h, K.h_lastack, ack) < 0 || slot_set_ll(h, K.h_lastacktime, r->ts) < 0)
            return -1;
        return 1;
    }
    PyObject *ooo = SLOT(h, K.h_ooo);
    /* (ooo: None, or a list, empty here, while nothing is buffered out of order) */
    if (SLOT(h, K.h_sink) != Py_None || SLOT(h, K.h_probe) != Py_None || ooo == NULL ||
        (ooo != Py_None && (!PyList_CheckExact(ooo) || PyList_Size(ooo) != 0)) ||
        slot_ll(h, K.h_nxt_off, &nxt_off) || slot_ll(h, K.h_data_bytes, &data_bytes) ||
        slot_ll(p, K.h_win, &p_win) || (plen == 1 && !p_win))
        return 0;
    /* one object for the next sequence number (the reassembler's and the analysis' two) and
     * for the time (the analysis' nextseqtime and the record's) */
    PyObject *next = PyLong_FromLongLong((seq + plen) & M32), *ts = PyLong_FromLongLong(r->ts);
    if (next == NULL || ts == NULL || slot_set_ll(h, K.h_segments, segments + 1) < 0 ||
        set_win(h, win) < 0 || (ack != lastack && slot_set_ll(h, K.h_lastack, ack) < 0) ||
        slot_set_ll(h, K.h_nxt_off, nxt_off + plen) < 0 ||
        slot_set_ll(h, K.h_data_bytes, data_bytes + plen) < 0) {
        Py_XDECREF(next);
        Py_XDECREF(ts);
        return -1;
    }
    slot_set(h, K.h_nxt_seq, Py_NewRef(next));
    slot_set(h, K.h_nextseq, Py_NewRef(next));
    slot_set(h, K.h_maxseq, next);
    slot_set(h, K.h_nextseqtime, Py_NewRef(ts));
    slot_set(h, K.h_lastacktime, Py_NewRef(ts));
    Py_INCREF(flow);
    Py_INCREF(dir);
    Py_INCREF(p);
    PyObject *frame = PyLong_FromLongLong(r->n);
    int rc = -1;
    if (frame != NULL)
        rc = deliver(e, batch, flow, dir, frame, ts, p, f + pstart, (Py_ssize_t)plen);
    Py_XDECREF(frame);
    Py_XDECREF(ts);
    Py_DECREF(flow);
    Py_DECREF(dir);
    Py_DECREF(p);
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
    Py_INCREF((PyObject *)e); /* callbacks into Python cannot free us meanwhile */
    for (int i = 0; i < 64; i++)
        e->seen[i].h = NULL;
    PyObject *result = NULL;
    while (PyList_Size(batch) < limit) {
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
        if (r.lt < 0 && r.tuple != NULL)
            xsetref(&e->last_tuple, Py_NewRef(r.tuple));
        else
            Py_CLEAR(e->last_tuple);
        streamdata_emitted = 0;
        int fast = PyList_Size(e->notes) ? 0 : fast_frame(e, &r, next_sweep, batch);
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
    Py_DECREF((PyObject *)e);
    return result;
}

static PyObject *engine_close(Engine *e, PyObject *unused)
{
    engine_release_view(e);
    e->mode = WALK_DONE;
    Py_CLEAR(e->pyiter);
    Py_CLEAR(e->on_frame);
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
    if (t != NULL && PyTuple_Check(t) && PyTuple_Size(t) > i)
        return Py_NewRef(PyTuple_GetItem(t, i));
    return PyLong_FromLongLong(v);
}

static PyObject *get_frames(Engine *e, void *c) { return last_field(e, 0, e->frames); }
static PyObject *get_last_ts(Engine *e, void *c) { return last_field(e, 1, e->last_ts); }
static PyObject *get_position(Engine *e, void *c) { return last_field(e, 3, e->position); }
static PyObject *get_offset(Engine *e, void *c) { return PyLong_FromLongLong(e->off); }

static PyGetSetDef engine_getset[] = {
    {"frames", (getter)get_frames, NULL, "number of the last frame read", NULL},
    {"last_ts", (getter)get_last_ts, NULL, "its timestamp", NULL},
    {"position", (getter)get_position, NULL, "its offset in the file", NULL},
    {"offset", (getter)get_offset, NULL,
     "where the walk stopped: the end, or (a stream) the start of a record cut short", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef engine_members[] = {
    {"packets", T_LONGLONG, offsetof(Engine, packets), READONLY,
     "MQTT packet events built by the engine"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot engine_slots[] = {
    {Py_tp_dealloc, engine_dealloc},
    {Py_tp_doc, "CaptureEngine(cap, halves, mqtt): the fast frame loop (see capture.c)."},
    {Py_tp_methods, engine_methods},
    {Py_tp_members, engine_members},
    {Py_tp_getset, engine_getset},
    {Py_tp_init, engine_init},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

/* A heap type (the limited API has no static PyTypeObject), immutable and final as the static
 * type was. */
PyType_Spec CaptureEngineSpec = {
    .name = "qosinspect._speedups.CaptureEngine",
    .basicsize = sizeof(Engine),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = engine_slots,
};
