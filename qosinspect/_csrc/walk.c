/* The record walk of the capture engine: pcap and pcapng, as CaptureFile._pcap_records and
 * CaptureFile._pcapng_records (qosinspect/capture/pcapfile.py, the reference) walk them.
 *
 * Every bound is checked before a byte is read. On any error, and on anything this walk does not
 * take (a timestamp beyond 64 bits, an interface option out of range, a timestamp the clock rules
 * of qosinspect/capture/clock.py must look at: odd_time below), the walk is handed to the
 * Python generator, started at the block where it stopped with the state it had (offset, frame
 * count, byte order, interfaces, last timestamp, next page release), and its records are read
 * from then on: every error message comes from Python.
 *
 * A stream (capture/stream.py) is walked piece by piece, each piece by a new engine resumed with
 * the state the last one left (walk_init's resume): a record the piece cuts short ends the walk
 * where it starts (e->stream), and the next piece, which begins with it, completes it.
 */
#include "engine.h"

PyObject *INTERFACE_CLS;

/* cap.byte_order, as the Python walk sets it at a section header (a stream resumes with it) */
static int set_byte_order(Engine *e, int big)
{
    PyObject *order = PyUnicode_FromString(big ? ">" : "<");
    if (order == NULL)
        return -1;
    int rc = PyObject_SetAttrString(e->cap, "byte_order", order);
    Py_DECREF(order);
    return rc;
}

static PyObject *make_interface(long long lt, long long snap, long long mul, long long div,
                                long long tsoff)
{
    return PyObject_CallFunction(INTERFACE_CLS, "LLLLL", lt, snap, mul, div, tsoff);
}

/* Hand the walk to the Python generator, started at the current block. */
static int defer_walk(Engine *e)
{
    PyObject *it;
    if (e->mode == WALK_PCAP)
        it = PyObject_CallMethod(e->cap, "_pcap_records", "LLLL", e->off, e->n, e->release_at,
                                 e->ng_last_ts);
    else
        it = PyObject_CallMethod(e->cap, "_pcapng_records", "LLsOLL", e->off, e->n,
                                 e->ng_big ? ">" : "<", e->ifaces_list, e->ng_last_ts,
                                 e->release_at);
    if (it == NULL)
        return -1;
    xsetref(&e->pyiter, it);
    e->mode = WALK_PYTHON;
    return 0;
}

/* A pcapng interface the Python walk described (an Interface tuple) as the C walk keeps it:
 * 0, or -1 (no exception left set) when a value is one this walk does not take (parse_idb
 * would have deferred it): the walk is then the Python one. */
static int iface_from_python(PyObject *t, Iface *f)
{
    long long v[5];
    if (!PyTuple_Check(t) || PyTuple_Size(t) != 5)
        return -1;
    for (int i = 0; i < 5; i++)
        if (exact_ll(PyTuple_GetItem(t, i), &v[i]) < 0)
            return -1;
    if (v[0] < 0 || v[0] > 0xFFFF || v[1] < 0 || v[2] < 1 || v[2] > 1000000000LL || v[3] < 1)
        return -1;
    f->linktype = (int)v[0];
    f->snaplen = v[1];
    f->mul = v[2];
    f->div = v[3];
    f->tsoff = v[4];
    return 0;
}

/* A resumed pcapng walk: the section's byte order and interfaces as the last piece left them
 * (the list is kept, as the Python walk keeps the one it is given). */
static int resume_pcapng(Engine *e, PyObject *order, PyObject *ifaces)
{
    e->ng_big = PyUnicode_CompareWithASCIIString(order, ">") == 0;
    e->ifaces_list = Py_NewRef(ifaces);
    if (PyObject_SetAttrString(e->cap, "interfaces", ifaces) < 0)
        return -1;
    Py_ssize_t count = PyList_Size(ifaces);
    if (count > 0) {
        e->ifaces = PyMem_Malloc(count * sizeof(Iface));
        if (e->ifaces == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        e->cap_ifaces = count;
    }
    for (Py_ssize_t i = 0; i < count; i++)
        if (iface_from_python(PyList_GetItem(ifaces, i), &e->ifaces[e->nifaces++]) < 0)
            return defer_walk(e);
    return 0;
}

/* Start the walk of e->buf (its format from the CaptureFile): read the pcap file header or
 * get ready for the first pcapng block, and set cap.interfaces as the Python walk does; with
 * `resume` (a stream's next piece), from its offset with its state. */
int walk_init(Engine *e, PyObject *fmt, PyObject *resume)
{
    int rc;
    long long off = -1;
    PyObject *order = NULL, *ifaces = NULL;
    if (resume != Py_None) {
        if (!PyArg_ParseTuple(resume, "LLLUO!", &off, &e->n, &e->ng_last_ts, &order,
                              &PyList_Type, &ifaces))
            return -1;
        if (off < 0 || e->n < 0) {
            PyErr_SetString(PyExc_ValueError, "resume: a negative offset or frame count");
            return -1;
        }
        e->release_at = LLONG_MAX; /* a stream is not mapped: no pages to hand back */
        e->frames = e->n;
        e->last_ts = e->ng_last_ts;
        e->position = off;
    }
    int is_pcap = PyUnicode_Check(fmt) && PyUnicode_CompareWithASCIIString(fmt, "pcap") == 0;
    if (is_pcap) {
        e->mode = WALK_PCAP;
        e->off = off >= 0 ? off : 24;
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
        if (PyList_SetItem(lst, 0, iface) < 0) { /* steals iface */
            Py_DECREF(lst);
            return -1;
        }
        rc = PyObject_SetAttrString(e->cap, "interfaces", lst);
        Py_DECREF(lst);
        return rc;
    }
    e->mode = WALK_PCAPNG;
    e->off = off >= 0 ? off : 0;
    if (ifaces != NULL)
        return resume_pcapng(e, order, ifaces);
    e->ifaces_list = PyList_New(0);
    if (e->ifaces_list == NULL)
        return -1;
    return PyObject_SetAttrString(e->cap, "interfaces", e->ifaces_list);
}

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

/* clock.py's TS_LIMIT, JUMP_GAP_NS and BACK_TOLERANCE_NS: a frame stamped outside
 * [0, TS_LIMIT), or (after the first) more than a second before the previous frame or more than
 * a day after it, goes to the Python walk, where clock.check_clock decides (clamps, notes). Only
 * when to hand over is here, not the rule. */
#define CLOCK_TS_LIMIT (1LL << 62)
#define CLOCK_JUMP_GAP_NS (86400LL * 1000000000LL)
#define CLOCK_BACK_TOLERANCE_NS 1000000000LL

static int odd_time(const Engine *e, long long ts)
{
    if (ts < 0 || ts >= CLOCK_TS_LIMIT)
        return 1;
    return e->n > 0 && (e->ng_last_ts - ts > CLOCK_BACK_TOLERANCE_NS ||
                        ts - e->ng_last_ts > CLOCK_JUMP_GAP_NS);
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

/* The next record, from the C walker or the Python generator: 1 and the fields (and, for the
 * generator, the tuple in r->tuple), 0 at the end, -1 on error (a CaptureError from the
 * generator, typically). */
static int walk_next(Engine *e, Rec *r)
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
                e->off = end; /* the generator walked the whole buffer */
                return 0;
            }
            r->tuple = t;
            long long v[6];
            if (!PyTuple_CheckExact(t) || PyTuple_Size(t) != 6)
                v[0] = -1;
            else
                for (int i = 0; i < 6; i++) {
                    int ovf = 0;
                    PyObject *x = PyTuple_GetItem(t, i);
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
                goto cut;
            const unsigned char *h = b + off;
            unsigned long sec = rd32(h, e->big), frac = rd32(h + 4, e->big);
            unsigned long caplen = rd32(h + 8, e->big), orig = rd32(h + 12, e->big);
            if (caplen > MAX_CAPLEN)
                goto defer;
            if (data + (long long)caplen > end)
                goto cut;
            long long pts = (long long)sec * 1000000000LL + (long long)frac * e->frac_mul;
            if (odd_time(e, pts))
                goto defer;
            e->n += 1;
            e->ng_last_ts = pts; /* the last timestamp, in pcap files too */
            r->n = e->n;
            r->ts = pts;
            r->lt = e->linktype;
            r->off = data;
            r->cl = (long long)caplen;
            r->ol = orig > caplen ? (long long)orig : (long long)caplen;
            e->off = data + (long long)caplen;
            return 1;
        }
        /* pcapng */
        if (off + 12 > end)
            goto cut;
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
        if (blen < 12 || blen % 4)
            goto defer;
        if (nxt > end)
            goto cut;
        if ((long long)rd32(b + nxt - 4, big) != blen)
            goto defer;
        if (btype == 0x0A0D0D0A) {
            PyObject *lst = PyList_New(0);
            if (lst == NULL || PyObject_SetAttrString(e->cap, "interfaces", lst) < 0 ||
                set_byte_order(e, big) < 0) {
                Py_XDECREF(lst);
                return -1;
            }
            xsetref(&e->ifaces_list, lst);
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
            if (ts_from_units(&e->ifaces[if_id], (unsigned long long)hi << 32 | lo, &ts) < 0 ||
                odd_time(e, ts))
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
    cut:
        /* the bytes end inside this record: in a stream, more are to come (the walk ends at
         * it); in a file, the Python walk says the error */
        if (e->stream) {
            e->mode = WALK_DONE;
            return 0;
        }
    defer:
        if (defer_walk(e) < 0)
            return -1;
    }
}

/* walk_next, and the record to e->on_frame first (watch --record-dir keeps the frames). */
int next_record(Engine *e, Rec *r)
{
    int got = walk_next(e, r);
    if (got != 1 || e->on_frame == NULL)
        return got;
    PyObject *res;
    if (r->tuple != NULL)
        res = PyTuple_Check(r->tuple) ? PyObject_CallObject(e->on_frame, r->tuple) : NULL;
    else
        res = PyObject_CallFunction(e->on_frame, "LLiLLL", r->n, r->ts, r->lt, r->off, r->cl,
                                    r->ol);
    if (res == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "a record of the Python walk is not a tuple");
        Py_CLEAR(r->tuple);
        return -1;
    }
    Py_DECREF(res);
    return 1;
}

