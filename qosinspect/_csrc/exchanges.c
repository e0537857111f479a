/* The common exchange steps of the correlator's fast loop (correlate.c), as
 * ExchangeTracker._publish, ._dup_after_end, ._ack, ._late_ack and ._end
 * do them in qosinspect/analysis/exchanges.py (the reference, which states the rules):
 *
 *   - a PUBLISH after an accepted CONNACK: QoS 0 with DUP=0 (its row), or QoS 1/2 on a packet
 *     id with no open exchange in its direction when no eviction follows -- with DUP=0 a new
 *     OpenExchange, with DUP=1 and the content of the id's finished exchange the re-send joins
 *     that row (dup_after_complete: mosquitto re-sends what it had no PUBACK for after a
 *     reconnection); then the session's counter and the delivery matcher (deliveries.c);
 *   - the first PUBACK / PUBREC / PUBREL / PUBCOMP of an open exchange of the right QoS (its
 *     times, count, reason code and last step; an ending one writes the exchange's row and
 *     remembers it in the session's DoneIndex), on another connection than the last too; and
 *     an acknowledgement of an id whose finished exchange has its QoS (a late one: it joins
 *     that row).
 *
 * Everything else is the Python correlator's: a re-send or a reused id while in flight, a new
 * exchange with DUP=1, dup_on_qos0, invalid QoS or ids, an eviction to come, orphan
 * acknowledgements, a wrong ack type, a second PUBREC or PUBREL of an open exchange, a row
 * still on the store's Python batch, values that do not fit their columns. Each step checks
 * every precondition and every value it will read or write before it changes anything, so it
 * either takes the event whole or leaves it untouched (return 0).
 */
#include "analysis.h"

enum { OPEN = 0, COMPLETE = 1, COMPLETE_AFTER_RECONNECT = 2, ABANDONED = 4, REFUSED = 5 };
#define NO_TS_VALUE LLONG_MIN /* records.NO_TS (configure_analysis checks it) */
enum { S_PUBLISH = 0, S_PUBACK = 1, S_PUBREC = 2, S_PUBREL = 3, S_PUBCOMP = 4 };

/* OpenExchange(ex_id, session, conn_id, direction, qos, packet_id, topic=-1, payload_len,
 * retain, dup=0, frame, ts, content, key) with every slot set as its __init__ sets it
 * (state.py); tp_alloc instead of a call, since no __init__ logic beyond that exists. */
static PyObject *new_open_exchange(long long ex_id, PyObject *session, PyObject *conn_id, int d,
                                   PyObject *qos, PyObject *pid, Py_ssize_t payload_len,
                                   int retain, PyObject *frame, PyObject *ts, long long content,
                                   PyObject *key)
{
    PyObject *ex_id_obj = PyLong_FromLongLong(ex_id);
    PyObject *len_obj = PyLong_FromSsize_t(payload_len);
    PyObject *content_obj = PyLong_FromLongLong(content);
    PyObject *ex = ex_id_obj && len_obj && content_obj ? A.ox_cls->tp_alloc(A.ox_cls, 0) : NULL;
    if (ex == NULL) {
        Py_XDECREF(ex_id_obj);
        Py_XDECREF(len_obj);
        Py_XDECREF(content_obj);
        return NULL;
    }
    static const int no_ts[] = {OX_t_puback, OX_t_puback_last, OX_t_pubrec, OX_t_pubrec_last,
                                OX_t_pubrel, OX_t_pubrel_last, OX_t_pubcomp, OX_t_pubcomp_last,
                                OX_t_end};
    static const int zero[] = {OX_dup_first, OX_n_dup, OX_n_puback, OX_n_pubrec, OX_n_pubrel,
                               OX_n_pubcomp, OX_outcome, OX_last_step, OX_spans_reconnect,
                               OX_dup_after_complete};
    static const int minus_one[] = {OX_topic, OX_puback_reason, OX_pubrec_reason,
                                    OX_pubrel_reason, OX_pubcomp_reason};
    for (size_t k = 0; k < sizeof(no_ts) / sizeof(no_ts[0]); k++)
        SLOT(ex, A.ox[no_ts[k]]) = Py_NewRef(A.no_ts);
    for (size_t k = 0; k < sizeof(zero) / sizeof(zero[0]); k++)
        SLOT(ex, A.ox[zero[k]]) = PyLong_FromLong(0); /* small ints: shared, cannot fail */
    for (size_t k = 0; k < sizeof(minus_one) / sizeof(minus_one[0]); k++)
        SLOT(ex, A.ox[minus_one[k]]) = PyLong_FromLong(-1);
    SLOT(ex, A.ox[OX_ex_id]) = ex_id_obj;
    SLOT(ex, A.ox[OX_payload_len]) = len_obj;
    SLOT(ex, A.ox[OX_content]) = content_obj;
    SLOT(ex, A.ox[OX_session]) = Py_NewRef(session);
    SLOT(ex, A.ox[OX_conn_id]) = Py_NewRef(conn_id);
    SLOT(ex, A.ox[OX_last_conn_id]) = Py_NewRef(conn_id);
    SLOT(ex, A.ox[OX_direction]) = PyLong_FromLong(d);
    SLOT(ex, A.ox[OX_qos]) = Py_NewRef(qos);
    SLOT(ex, A.ox[OX_packet_id]) = Py_NewRef(pid);
    SLOT(ex, A.ox[OX_retain]) = PyLong_FromLong(retain);
    SLOT(ex, A.ox[OX_frame]) = Py_NewRef(frame);
    SLOT(ex, A.ox[OX_t_publish]) = Py_NewRef(ts);
    SLOT(ex, A.ox[OX_t_publish_last]) = Py_NewRef(ts);
    SLOT(ex, A.ox[OX_n_publish]) = PyLong_FromLong(1);
    SLOT(ex, A.ox[OX_key]) = Py_NewRef(key);
    return ex;
}

/* DoneIndex.put(key, row): the dict while it stays one, the array once it is one; the switch
 * from one to the other is the Python method's. */
static int done_put(PyObject *done, PyObject *key, long long row)
{
    PyObject *rowobj = PyLong_FromLongLong(row);
    if (rowobj == NULL)
        return -1;
    PyObject *d = SLOT(done, A.d_dict), *arr = SLOT(done, A.d_arr);
    int rc;
    if (d != NULL && PyDict_CheckExact(d) && PyDict_GET_SIZE(d) < A.dict_limit)
        rc = PyDict_SetItem(d, key, rowobj); /* at most DICT_LIMIT keys after: stays a dict */
    else if (d == Py_None && arr != NULL && arr != Py_None)
        rc = PyObject_SetItem(arr, key, rowobj);
    else {
        PyObject *res = PyObject_CallMethodObjArgs(done, A.put, key, rowobj, NULL);
        rc = res == NULL ? -1 : 0;
        Py_XDECREF(res);
    }
    Py_DECREF(rowobj);
    return rc;
}

/* DoneIndex.get(key): 1 and *row, 0 none, -2 anything odd (Python's), -1 exception. */
static int done_get(PyObject *done, PyObject *key, long long *row)
{
    if (done == NULL || !Py_IS_TYPE(done, A.done))
        return -2;
    PyObject *d = SLOT(done, A.d_dict), *arr = SLOT(done, A.d_arr);
    if (d != NULL && PyDict_CheckExact(d)) {
        PyObject *x = PyDict_GetItemWithError(d, key);
        if (x == NULL)
            return PyErr_Occurred() ? -1 : 0;
        return exact_ll(x, row) < 0 || *row < 0 ? -2 : 1;
    }
    if (d != Py_None || arr == NULL || arr == Py_None)
        return -2;
    PyObject *x = PyObject_GetItem(arr, key);
    if (x == NULL) {
        PyErr_Clear(); /* Python raises it itself */
        return -2;
    }
    int bad = exact_ll(x, row);
    Py_DECREF(x);
    return bad ? -2 : *row < 0 ? 0 : 1;
}

/* RowStore.get(name, row, default) / .set(name, row, value) on a finished exchange's row, by
 * XC_* column (a column the store does not have reads as the default and is not written). */
static long long xget(const Run *r, const char *row, int which, long long dflt)
{
    return r->xc[which] < 0 ? dflt : sv_get(&r->ex, row, r->xc[which]);
}

static int xfits(const Run *r, int which, long long x)
{
    return r->xc[which] < 0 || sv_fits(&r->ex, r->xc[which], x);
}

static void xset(const Run *r, char *row, int which, long long x)
{
    if (r->xc[which] >= 0)
        sv_set(&r->ex, row, r->xc[which], x);
}

/* c.reconnect and one of its counters, when `needed`: 1 ready (*rc_obj, *value), 0 Python's. */
static int reconnect_counter(PyObject *c, Py_ssize_t slot, int needed, PyObject **rc_obj,
                             long long *value)
{
    *rc_obj = SLOT(c, A.c_reconnect);
    if (!needed)
        return 1;
    return *rc_obj != NULL && Py_IS_TYPE(*rc_obj, A.reconnect) &&
           slot_ll(*rc_obj, slot, value) == 0 && *value >= 0 && *value < LLONG_MAX / 2;
}

/* ExchangeTracker._dup_after_end: a PUBLISH with DUP=1 and the content of the id's finished
 * exchange joins that row. 1 taken, 0 Python's, -1 exception. */
static int dup_after_end(Run *r, const Ev *e, char *row, long long content, int code,
                         int retain, long long n_publish)
{
    long long conn_id, n_pub = xget(r, row, XC_n_publish, 0) + 1,
                       n_dup = xget(r, row, XC_n_dup, 0) + 1,
                       n_after = xget(r, row, XC_dup_after_complete, 0) + 1, redelivered = 0;
    int d = e->d;
    PyObject *rc_obj;
    if (exact_ll(SLOT(e->c, A.c_conn_id), &conn_id) < 0 || !xfits(r, XC_n_publish, n_pub) ||
        !xfits(r, XC_n_dup, n_dup) || !xfits(r, XC_dup_after_complete, n_after) ||
        !xfits(r, XC_t_publish_last, e->ts) || !xfits(r, XC_last_conn_id, conn_id) ||
        !xfits(r, XC_spans_reconnect, 1))
        return 0;
    int moved = xget(r, row, XC_last_conn_id, 0) != conn_id;
    int redelivers = xget(r, row, XC_conn_id, 0) != conn_id;
    if (!reconnect_counter(e->c, A.rc_publish, redelivers && SLOT(e->c, A.c_reconnect) != Py_None,
                           &rc_obj, &redelivered))
        return 0;
    long long qos = xget(r, row, XC_qos, 0);
    if (d == 1 && r->m.obj != NULL && (qos < -128 || qos > 127))
        return 0;
    /* --- taken --- */
    if (preamble(r, e) < 0 || slot_set_ll(e->rec, A.r_n_publish[d], n_publish + 1) < 0)
        return -1;
    xset(r, row, XC_n_publish, n_pub);
    xset(r, row, XC_n_dup, n_dup);
    xset(r, row, XC_dup_after_complete, n_after);
    xset(r, row, XC_t_publish_last, e->ts);
    if (moved) {
        xset(r, row, XC_last_conn_id, conn_id);
        xset(r, row, XC_spans_reconnect, 1);
    }
    if (redelivers && rc_obj != Py_None && slot_set_ll(rc_obj, A.rc_publish, redelivered + 1) < 0)
        return -1;
    if (d == 1 && r->m.obj != NULL) {
        /* [MQTT-4.3.2-5] [MQTT-4.3.3-9]: the receiver takes it as a new publication */
        PyObject *k = PyLong_FromLongLong(content);
        int rc = k == NULL ? -1 : matcher_deliver(&r->m, k, e->ts, (int)qos, code, retain);
        Py_XDECREF(k);
        if (rc < 0)
            return -1;
    }
    return 1;
}

/* ExchangeTracker._end(s, ex, outcome, ts); the caller checked that every column slot is set */
static int end_exchange(Run *r, PyObject *s, PyObject *ex, int outcome, PyObject *ts)
{
    slot_set(ex, A.ox[OX_outcome], PyLong_FromLong(outcome));
    slot_set(ex, A.ox[OX_t_end], Py_NewRef(ts));
    PyObject *key = Py_NewRef(SLOT(ex, A.ox[OX_key]));
    int rc = -1;
    if (PyDict_DelItem(SLOT(s, A.s_open), key) < 0)
        goto out;
    r->n_open--;
    /* store.getter(ex): the columns in order; values that are not ints go in as they are */
    long long vals[OX_N];
    PyObject *objs = NULL;
    for (Py_ssize_t k = 0; k < r->ncols && objs == NULL; k++)
        if (exact_ll(SLOT(ex, r->cols[k]), &vals[k]) < 0) {
            if ((objs = PyTuple_New(r->ncols)) == NULL)
                goto out;
            for (Py_ssize_t j = 0; j < r->ncols; j++)
                PyTuple_SET_ITEM(objs, j, Py_NewRef(SLOT(ex, r->cols[j])));
        }
    long long index = sv_append(&r->ex, vals, objs);
    Py_XDECREF(objs);
    if (index < 0 || done_put(SLOT(s, A.s_done), key, index) < 0)
        goto out;
    rc = sv_settle(&r->ex);
out:
    Py_DECREF(key);
    return rc;
}

/* hash((topic, payload)): the content key of exchanges.py and deliveries.py */
static int content_hash(PyObject *topic, PyObject *payload, long long *h)
{
    PyObject *t = PyTuple_Pack(2, topic, payload);
    if (t == NULL)
        return -1;
    Py_hash_t v = PyObject_Hash(t);
    Py_DECREF(t);
    if (v == -1)
        return -1;
    *h = (long long)v;
    return 0;
}

int fast_publish(Run *r, const Ev *e)
{
    PyObject *p = e->p, *s = e->s, *c = e->c;
    /* Correlator._packet: a PUBLISH before an accepted CONNACK goes through _introduce */
    if (PyTuple_GET_SIZE(p) != 7 || slot_bool(c, A.c_connack_seen) != 1 ||
        slot_bool(c, A.c_refused) != 0)
        return 0;
    PyObject *topic = PyTuple_GET_ITEM(p, 0), *payload = PyTuple_GET_ITEM(p, 1),
             *qos_obj = PyTuple_GET_ITEM(p, 2), *retain_obj = PyTuple_GET_ITEM(p, 4),
             *pid_obj = PyTuple_GET_ITEM(p, 5);
    long long qos, pid = 0, n_publish, n_exchanges, code;
    PyObject *dup_obj = PyTuple_GET_ITEM(p, 3);
    if (!PyUnicode_CheckExact(topic) || !PyBytes_CheckExact(payload) ||
        exact_ll(qos_obj, &qos) < 0 || (dup_obj != Py_True && dup_obj != Py_False) ||
        (retain_obj != Py_True && retain_obj != Py_False))
        return 0;
    int retain = retain_obj == Py_True, dup = dup_obj == Py_True, d = e->d;
    if (dup && qos == 0)
        return 0; /* dup_on_qos0 */
    PyObject *srec = SLOT(s, A.s_rec), *code_obj = SLOT(s, A.s_code), *open = NULL;
    if (srec == NULL || !Py_IS_TYPE(srec, A.session) ||
        slot_ll(e->rec, A.r_n_publish[d], &n_publish) < 0 || n_publish >= LLONG_MAX / 2 ||
        slot_ll(srec, A.se_n_exchanges[d], &n_exchanges) < 0 || n_exchanges >= LLONG_MAX / 2 ||
        exact_ll(code_obj, &code) < 0 || code < 0 || code > INT_MAX)
        return 0;
    if (qos != 0) {
        open = SLOT(s, A.s_open);
        if ((qos != 1 && qos != 2) || exact_ll(pid_obj, &pid) < 0 || pid < 1 || pid > 0xFFFF ||
            open == NULL || !PyDict_CheckExact(open) ||
            PyDict_GET_SIZE(open) + 1 > r->max_per || r->n_open + 1 > r->max_total)
            return 0; /* invalid QoS or id, or an eviction to come */
    }
    if (r->m.obj != NULL && d == 0 && !matcher_ts_ok(&r->m, e->ts))
        return 0;
    long long content;
    if (content_hash(topic, payload, &content) < 0)
        return -1;
    PyObject *key = NULL;
    if (qos != 0) {
        if ((key = PyLong_FromLongLong((long long)d << 16 | pid)) == NULL)
            return -1;
        PyObject *ex = PyDict_GetItemWithError(open, key);
        if (ex != NULL || PyErr_Occurred()) {
            Py_DECREF(key);
            return ex != NULL ? 0 : -1; /* a re-send, or the id reused while in flight */
        }
    }
    if (dup) {
        /* the same message on an id whose exchange finished joins it; another one starts a
         * new exchange with DUP=1 (rare: Python's) */
        long long done_row;
        int got = done_get(SLOT(s, A.s_done), key, &done_row);
        Py_DECREF(key);
        if (got != 1)
            return got == -1 ? -1 : 0;
        char *row = sv_row(&r->ex, done_row);
        if (row == NULL || r->xc[XC_content] < 0 || xget(r, row, XC_content, 0) != content)
            return 0;
        return dup_after_end(r, e, row, content, (int)code, retain, n_publish);
    }
    /* --- from here on the event is taken --- */
    int rc = -1;
    PyObject *content_obj = NULL;
    if (preamble(r, e) < 0 || slot_set_ll(e->rec, A.r_n_publish[d], n_publish + 1) < 0)
        goto out;
    long long ex_id = r->next_ex_id++;
    if (qos == 0) {
        static const long long dup0[1] = {0}; /* the row (dup,) of a report */
        if (sv_append(&r->q0, dup0, NULL) < 0 || sv_settle(&r->q0) < 0)
            goto out;
    }
    else {
        PyObject *ex = new_open_exchange(ex_id, code_obj, SLOT(c, A.c_conn_id), d, qos_obj,
                                         pid_obj, PyBytes_GET_SIZE(payload), retain, e->frame,
                                         e->ts_obj, content, key);
        if (ex == NULL)
            goto out;
        int bad = PyDict_SetItem(open, key, ex);
        Py_DECREF(ex);
        if (bad < 0)
            goto out;
        r->n_open++;
    }
    if (slot_set_ll(srec, A.se_n_exchanges[d], n_exchanges + 1) < 0)
        goto out;
    if (r->m.obj != NULL) {
        /* ExchangeTracker._match; a report keeps no topic codes (-1) */
        if ((content_obj = PyLong_FromLongLong(content)) == NULL)
            goto out;
        if (d == 0 ? matcher_publish(&r->m, content_obj, content, e->ts, ex_id, (int)qos,
                                     (int)code, topic) < 0
                   : matcher_deliver(&r->m, content_obj, e->ts, (int)qos, (int)code,
                                     retain) < 0)
            goto out;
    }
    rc = 1;
out:
    Py_XDECREF(key);
    Py_XDECREF(content_obj);
    return rc;
}

/* ExchangeTracker._ack for an id without an open exchange whose finished one has the QoS of
 * this ack and was not abandoned, then ._late_ack: the ack joins that row (the answer to a DUP
 * re-send, or a step sent again). 1 taken, 0 Python's (an orphan ack), -1 exception. */
static int late_ack(Run *r, const Ev *e, int step, int want_qos, long long reason,
                    long long done_row)
{
    char *row = sv_row(&r->ex, done_row);
    if (row == NULL || xget(r, row, XC_qos, 0) != want_qos ||
        xget(r, row, XC_outcome, 0) == ABANDONED)
        return 0;
    int t = XC_STEP0 + 4 * (step - 1), t_last = t + 1, n = t + 2, why = t + 3;
    long long conn_id, count = xget(r, row, n, 0) + 1, redelivered = 0;
    int first = r->xc[t] >= 0 && xget(r, row, t, 0) == NO_TS_VALUE;
    PyObject *rc_obj;
    if (exact_ll(SLOT(e->c, A.c_conn_id), &conn_id) < 0 ||
        (first && (!xfits(r, t, e->ts) || !xfits(r, why, reason))) || !xfits(r, t_last, e->ts) ||
        !xfits(r, n, count) || !xfits(r, XC_last_conn_id, conn_id) ||
        !xfits(r, XC_spans_reconnect, 1))
        return 0;
    int moved = xget(r, row, XC_last_conn_id, 0) != conn_id;
    int redelivers = step == S_PUBREL && xget(r, row, XC_conn_id, 0) != conn_id;
    if (!reconnect_counter(e->c, A.rc_pubrel, redelivers && SLOT(e->c, A.c_reconnect) != Py_None,
                           &rc_obj, &redelivered))
        return 0;
    /* --- taken --- */
    if (preamble(r, e) < 0)
        return -1;
    if (first) {
        xset(r, row, t, e->ts);
        xset(r, row, why, reason);
    }
    xset(r, row, t_last, e->ts);
    xset(r, row, n, count);
    if (moved) {
        xset(r, row, XC_last_conn_id, conn_id);
        xset(r, row, XC_spans_reconnect, 1);
    }
    if (redelivers && rc_obj != Py_None && slot_set_ll(rc_obj, A.rc_pubrel, redelivered + 1) < 0)
        return -1;
    return 1;
}

/* An int reason code as the decoder makes it: an int, or an IntEnum of the ack types. */
static int reason_ok(PyObject *x)
{
    if (PyLong_CheckExact(x))
        return 1;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(A.reasons); k++)
        if ((PyObject *)Py_TYPE(x) == PyTuple_GET_ITEM(A.reasons, k))
            return 1;
    return 0;
}

int fast_ack(Run *r, const Ev *e, int ptype)
{
    PyObject *p = e->p, *s = e->s, *c = e->c;
    /* Correlator._packet: an acknowledgement before CONNECT goes through _introduce */
    if (PyTuple_GET_SIZE(p) != 3 || slot_bool(c, A.c_connect_seen) != 1)
        return 0;
    long long pid, reason;
    PyObject *reason_obj = PyTuple_GET_ITEM(p, 1);
    if (exact_ll(PyTuple_GET_ITEM(p, 0), &pid) < 0 || pid < 1 || pid > 0xFFFF ||
        !reason_ok(reason_obj))
        return 0;
    if (int_ll(reason_obj, &reason) < 0) /* int(p.reason_code) */
        return 0;
    /* PUBACK, PUBREC and PUBCOMP come from the PUBLISH's receiver, PUBREL from its sender */
    int step = ptype - 3, want_qos = ptype == 4 ? 1 : 2, exd = ptype == 6 ? e->d : e->d ^ 1;
    PyObject *open = SLOT(s, A.s_open);
    if (open == NULL || !PyDict_CheckExact(open))
        return 0;
    PyObject *key = PyLong_FromLongLong((long long)exd << 16 | pid);
    if (key == NULL)
        return -1;
    PyObject *ex = PyDict_GetItemWithError(open, key);
    if (ex == NULL) {
        long long done_row;
        int got = PyErr_Occurred() ? -1 : done_get(SLOT(s, A.s_done), key, &done_row);
        Py_DECREF(key);
        if (got != 1)
            return got == -1 ? -1 : 0; /* an orphan acknowledgement, or something odd */
        return late_ack(r, e, step, want_qos, reason, done_row);
    }
    Py_DECREF(key);
    long long qos, last_conn, conn_id, spans, count = 0, last_step = 0, resumed = 0;
    PyObject *conn_obj = SLOT(c, A.c_conn_id), *done = SLOT(s, A.s_done), *rc_obj = NULL;
    if (!Py_IS_TYPE(ex, A.ox_cls) || slot_ll(ex, A.ox[OX_qos], &qos) < 0 || qos != want_qos ||
        slot_ll(ex, A.ox[OX_last_conn_id], &last_conn) < 0 ||
        exact_ll(conn_obj, &conn_id) < 0 || slot_ll(ex, A.ox[OX_spans_reconnect], &spans) < 0)
        return 0; /* a wrong ack type for the QoS, or something odd */
    if (step == S_PUBREC || step == S_PUBREL) {
        if (slot_ll(ex, A.ox[step == S_PUBREC ? OX_n_pubrec : OX_n_pubrel], &count) < 0 ||
            count != 0 || slot_ll(ex, A.ox[OX_last_step], &last_step) < 0)
            return 0; /* a re-sent PUBREC or PUBREL */
    }
    int moved = conn_id != last_conn;
    int end = (step == S_PUBREC || step == S_PUBREL) ? OPEN : COMPLETE;
    if (reason >= 0x80 && step != S_PUBREL)
        end = REFUSED; /* a PUBACK/PUBCOMP failure; a PUBREC one ends the flow [MQTT-4.3.3-4] */
    if (end == COMPLETE && (moved || spans)) {
        end = COMPLETE_AFTER_RECONNECT;
        rc_obj = SLOT(c, A.c_reconnect);
        if (rc_obj == NULL || (rc_obj != Py_None && (!Py_IS_TYPE(rc_obj, A.reconnect) ||
                                                     slot_ll(rc_obj, A.rc_resumed, &resumed) < 0 ||
                                                     resumed >= LLONG_MAX / 2)))
            return 0;
    }
    if (end != OPEN) {
        if (done == NULL || !Py_IS_TYPE(done, A.done) || SLOT(ex, A.ox[OX_key]) == NULL)
            return 0;
        for (Py_ssize_t k = 0; k < r->ncols; k++)
            if (SLOT(ex, r->cols[k]) == NULL)
                return 0; /* the row could not be read (Python raises) */
    }
    /* --- from here on the event is taken --- */
    Py_INCREF(ex);
    int rc = -1;
    PyObject *reason_int = PyLong_FromLongLong(reason);
    if (reason_int == NULL || preamble(r, e) < 0)
        goto out;
    if (moved) {
        slot_set(ex, A.ox[OX_last_conn_id], Py_NewRef(conn_obj));
        slot_set(ex, A.ox[OX_spans_reconnect], PyLong_FromLong(1));
    }
    static const int slots[5][4] = {
        /* t first, t last, count, reason, by step */
        {0, 0, 0, 0},
        {OX_t_puback, OX_t_puback_last, OX_n_puback, OX_puback_reason},
        {OX_t_pubrec, OX_t_pubrec_last, OX_n_pubrec, OX_pubrec_reason},
        {OX_t_pubrel, OX_t_pubrel_last, OX_n_pubrel, OX_pubrel_reason},
        {OX_t_pubcomp, OX_t_pubcomp_last, OX_n_pubcomp, OX_pubcomp_reason},
    };
    PyObject *ts = e->ts_obj;
    slot_set(ex, A.ox[slots[step][0]], Py_NewRef(ts));
    slot_set(ex, A.ox[slots[step][1]], Py_NewRef(ts));
    slot_set(ex, A.ox[slots[step][2]], PyLong_FromLong(1)); /* the first of its step */
    slot_set(ex, A.ox[slots[step][3]], Py_NewRef(reason_int));
    if ((step != S_PUBREC && step != S_PUBREL) || last_step < step)
        slot_set(ex, A.ox[OX_last_step], PyLong_FromLong(step));
    if (end != OPEN) {
        if (end == COMPLETE_AFTER_RECONNECT && rc_obj != Py_None &&
            slot_set_ll(rc_obj, A.rc_resumed, resumed + 1) < 0)
            goto out;
        if (end_exchange(r, s, ex, end, ts) < 0)
            goto out;
    }
    rc = 1;
out:
    Py_XDECREF(reason_int);
    Py_DECREF(ex);
    return rc;
}
