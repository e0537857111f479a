/* The common exchange steps of the correlator's fast loop (correlate.c), as
 * ExchangeTracker._publish, ._ack and ._end do them in qosinspect/analysis/exchanges.py (the
 * reference, which states the rules):
 *
 *   - a PUBLISH with DUP=0 after an accepted CONNACK: QoS 0 (its row), or QoS 1/2 on a packet
 *     id with no open exchange in its direction when no eviction follows (a new OpenExchange);
 *     then the session's counter and the delivery matcher (deliveries.c);
 *   - the first PUBACK / PUBREC / PUBREL / PUBCOMP of an open exchange of the right QoS (its
 *     times, count, reason code and last step; an ending one writes the exchange's row and
 *     remembers it in the session's DoneIndex), on another connection than the last too.
 *
 * Everything else is the Python correlator's: a DUP=1 PUBLISH (re-sends, dup_on_qos0), an id
 * in flight (re-send or reuse), invalid QoS or ids, an eviction to come, late and orphan
 * acknowledgements, a wrong ack type, a second PUBREC or PUBREL. Each step checks every
 * precondition and every value it will read before it changes anything, so it either takes the
 * event whole or leaves it untouched (return 0).
 */
#include "analysis.h"

enum { OPEN = 0, COMPLETE = 1, COMPLETE_AFTER_RECONNECT = 2, REFUSED = 5 };
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
    PyObject *row = PyTuple_New(r->ncols); /* store.getter(ex): the columns, in order */
    if (row != NULL)
        for (Py_ssize_t k = 0; k < r->ncols; k++)
            PyTuple_SET_ITEM(row, k, Py_NewRef(SLOT(ex, r->cols[k])));
    long long index = rows_put(r->exstore, row);
    if (index < 0 || done_put(SLOT(s, A.s_done), key, index) < 0)
        goto out;
    rc = rows_flush_full(r->exstore);
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
    if (!PyUnicode_CheckExact(topic) || !PyBytes_CheckExact(payload) ||
        exact_ll(qos_obj, &qos) < 0 || PyTuple_GET_ITEM(p, 3) != Py_False ||
        (retain_obj != Py_True && retain_obj != Py_False))
        return 0; /* DUP=1 (a re-send, or dup_on_qos0) is Python's */
    int retain = retain_obj == Py_True, d = e->d;
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
    /* --- from here on the event is taken --- */
    int rc = -1;
    PyObject *content_obj = NULL;
    if (preamble(r, e) < 0 || slot_set_ll(e->rec, A.r_n_publish[d], n_publish + 1) < 0)
        goto out;
    long long ex_id = r->next_ex_id++;
    if (qos == 0) {
        if (rows_add(r->q0store, Py_NewRef(A.q0_row)) < 0) /* the row (dup,) of a report */
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
                                     (int)code, -1, topic) < 0
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
    int overflow = 0;
    reason = PyLong_AsLongLongAndOverflow(reason_obj, &overflow); /* int(p.reason_code) */
    if (overflow || (reason == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    /* PUBACK, PUBREC and PUBCOMP come from the PUBLISH's receiver, PUBREL from its sender */
    int step = ptype - 3, want_qos = ptype == 4 ? 1 : 2, exd = ptype == 6 ? e->d : e->d ^ 1;
    PyObject *open = SLOT(s, A.s_open);
    if (open == NULL || !PyDict_CheckExact(open))
        return 0;
    PyObject *key = PyLong_FromLongLong((long long)exd << 16 | pid);
    if (key == NULL)
        return -1;
    PyObject *ex = PyDict_GetItemWithError(open, key);
    Py_DECREF(key);
    if (ex == NULL)
        return PyErr_Occurred() ? -1 : 0; /* a late or orphan acknowledgement */
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
