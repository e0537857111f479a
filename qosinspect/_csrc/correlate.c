/* The correlator's fast loop: Correlator.consume for report mode (qosinspect/analysis/).
 *
 * Why: `qosinspect report` on a capture of a million packets spent about three quarters of its
 * time in Correlator._packet and the exchange and delivery steps under it, a few microseconds
 * of interpreted code per packet. The capture decoder was already in C (capture.c).
 *
 * The Python correlator (correlate.py, exchanges.py, sessions.py, deliveries.py) is the
 * reference and states every rule; correlate(correlator, iterator) runs its loop in C and takes
 * the common steps of a connection in its steady state exactly as the Python code does them,
 * on the Python objects' own state:
 *
 *   - the bookkeeping of every packet it takes (event count, first and last time, the
 *     connection's per-direction counters, the one-entry cache of the last connection);
 *   - PINGREQ / PINGRESP after CONNECT (nothing else to do for them);
 *   - the common PUBLISH and acknowledgement steps (exchanges.c) with the delivery matcher's
 *     publish and deliver (deliveries.c).
 *
 * Every other event -- other packet types, the non-packet events, a packet of a connection not
 * seen before, of unknown direction, on which the version is learned, values of unexpected
 * types or beyond 64 bits, and whatever the steps decline -- is handed, in order, to the Python
 * correlator (Correlator._packet or Correlator.feed). A step checks all it needs before it
 * changes anything, so each event is taken whole by one side or the other.
 *
 * The correlator's counters (n_events, _t_lo, _t_hi, next_ex_id, n_open_total, the last
 * connection) are kept in C while the loop runs, written back (run_store) before any Python step
 * and at the end, and read again (run_load) after a Python step. Only a correlator made with
 * detail=False (no per-packet table, report columns, narrow matcher) runs here: run_load says
 * no to anything else, and the Python loop takes the rest of the iterator. (So the iterator
 * must not feed the correlator itself; and an exception inside a step already taken -- memory
 * exhaustion -- propagates with that step half done, as it would in Python.)
 * tests/speedups/test_analysis_diff.py compares both paths table by table.
 */
#include "analysis.h"

const char *const OX_NAMES[OX_N] = {
    "conn_id", "content", "direction", "dup_after_complete", "dup_first", "ex_id", "frame",
    "key", "last_conn_id", "last_step", "n_dup", "n_puback", "n_pubcomp", "n_publish",
    "n_pubrec", "n_pubrel", "outcome", "packet_id", "payload_len", "puback_reason",
    "pubcomp_reason", "pubrec_reason", "pubrel_reason", "qos", "retain", "session",
    "spans_reconnect", "t_end", "t_puback", "t_puback_last", "t_pubcomp", "t_pubcomp_last",
    "t_publish", "t_publish_last", "t_pubrec", "t_pubrec_last", "t_pubrel", "t_pubrel_last",
    "topic",
};

const char *const XC_NAMES[XC_N] = {
    "content", "qos", "outcome", "conn_id", "last_conn_id", "spans_reconnect", "n_publish",
    "n_dup", "dup_after_complete", "t_publish_last",
    "t_puback", "t_puback_last", "n_puback", "puback_reason",
    "t_pubrec", "t_pubrec_last", "n_pubrec", "pubrec_reason",
    "t_pubrel", "t_pubrel_last", "n_pubrel", "pubrel_reason",
    "t_pubcomp", "t_pubcomp_last", "n_pubcomp", "pubcomp_reason",
};

AnalysisConfig A;

/* Attribute and method names of the Correlator (a plain class: no slots). */
static struct {
    PyObject *detail, *packets, *exchanges, *q0, *matcher, *conns, *n_events, *t_lo, *t_hi,
        *next_ex_id, *n_open_total, *max_per, *max_total, *last_info, *last_conn, *packet_meth,
        *feed_meth;
} N;

/* --- configuration ------------------------------------------------------------------------------ */

static int offsets(PyObject *cls, const char *const *names, Py_ssize_t *const *dst, int n)
{
    for (int k = 0; k < n; k++)
        if (slot_offset(cls, names[k], dst[k]) < 0)
            return -1;
    return 0;
}

static int check_names(PyObject *seq, const char *const *want, int n, const char *what)
{
    if (!PyTuple_Check(seq) || PyTuple_GET_SIZE(seq) < n) {
        PyErr_Format(PyExc_ValueError, "%s: a tuple of at least %d names expected", what, n);
        return -1;
    }
    for (int k = 0; k < n; k++) {
        PyObject *s = PyTuple_GET_ITEM(seq, k);
        if (!PyUnicode_Check(s) || PyUnicode_CompareWithASCIIString(s, want[k]) != 0) {
            PyErr_Format(PyExc_ValueError, "%s[%d] is %R, the C code expects %s", what, k, s,
                         want[k]);
            return -1;
        }
    }
    return 0;
}

static int intern(PyObject **dst, const char *s)
{
    if (*dst == NULL && (*dst = PyUnicode_InternFromString(s)) == NULL)
        return -1;
    return 0;
}

static int intern_all(void)
{
    struct { PyObject **dst; const char *s; } names[] = {
        {&N.detail, "detail"}, {&N.packets, "packets"}, {&N.exchanges, "exchanges"},
        {&N.q0, "q0"}, {&N.matcher, "matcher"}, {&N.conns, "_conns"},
        {&N.n_events, "n_events"}, {&N.t_lo, "_t_lo"}, {&N.t_hi, "_t_hi"},
        {&N.next_ex_id, "next_ex_id"}, {&N.n_open_total, "n_open_total"},
        {&N.max_per, "max_open_per_session"}, {&N.max_total, "max_open_total"},
        {&N.last_info, "_last_info"}, {&N.last_conn, "_last_conn"}, {&N.packet_meth, "_packet"},
        {&N.feed_meth, "feed"}, {&A.put, "put"},
    };
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
        if (intern(names[k].dst, names[k].s) < 0)
            return -1;
    return matcher_configure();
}

static int class_int(PyObject *cls, const char *name, long long *v)
{
    PyObject *x = PyObject_GetAttrString(cls, name);
    if (x == NULL)
        return -1;
    *v = PyLong_AsLongLong(x);
    Py_DECREF(x);
    return (*v == -1 && PyErr_Occurred()) ? -1 : 0;
}

PyObject *sp_configure_analysis(PyObject *module, PyObject *args)
{
    PyObject *event, *info, *publish, *acks, *pings, *reasons, *conn, *sess, *ox, *done, *store,
        *connection, *session, *reconnect, *matcher, *c2b, *b2c, *no_ts, *outcomes, *steps,
        *statuses;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!O!O!O!O!O!O!O!O!O!OOOO!O!O!", &PyType_Type, &event,
                          &PyType_Type, &info, &PyType_Type, &publish, &PyTuple_Type, &acks,
                          &PyTuple_Type, &pings, &PyTuple_Type, &reasons, &PyType_Type, &conn,
                          &PyType_Type, &sess, &PyType_Type, &ox, &PyType_Type, &done,
                          &PyType_Type, &store, &PyType_Type, &connection, &PyType_Type,
                          &session, &PyType_Type, &reconnect, &PyType_Type, &matcher, &c2b,
                          &b2c, &no_ts, &PyTuple_Type, &outcomes, &PyTuple_Type, &steps,
                          &PyTuple_Type, &statuses))
        return NULL;
    if (PyTuple_GET_SIZE(acks) != 4 || PyTuple_GET_SIZE(pings) != 2) {
        PyErr_SetString(PyExc_ValueError, "(PubAck, PubRec, PubRel, PubComp), (PingReq, "
                        "PingResp) expected");
        return NULL;
    }
    for (int k = 0; k < 4; k++)
        if (!PyType_Check(PyTuple_GET_ITEM(acks, k)) ||
            (k < 2 && !PyType_Check(PyTuple_GET_ITEM(pings, k)))) {
            PyErr_SetString(PyExc_TypeError, "packet classes expected");
            return NULL;
        }
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(reasons); k++)
        if (!PyType_Check(PyTuple_GET_ITEM(reasons, k))) {
            PyErr_SetString(PyExc_TypeError, "reason code classes expected");
            return NULL;
        }
    if (!PyType_IsSubtype((PyTypeObject *)event, &PyTuple_Type) ||
        !PyType_IsSubtype((PyTypeObject *)publish, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "MqttPacketEvent and Publish must be NamedTuples");
        return NULL;
    }
    long long no_ts_value;
    if (exact_ll(no_ts, &no_ts_value) < 0 || no_ts_value != LLONG_MIN) {
        PyErr_SetString(PyExc_ValueError, "NO_TS: the int64 minimum expected (exchanges.c)");
        return NULL;
    }
    static const char *const OUTCOME_NAMES[] = {"open", "complete", "complete_after_reconnect",
                                                "incomplete", "abandoned", "refused"};
    static const char *const STEP_NAMES[] = {"publish", "puback", "pubrec", "pubrel",
                                             "pubcomp"};
    static const char *const STATUS_NAMES[] = {"delivered", "duplicate", "not_delivered"};
    if (check_names(outcomes, OUTCOME_NAMES, 6, "OUTCOMES") < 0 ||
        check_names(steps, STEP_NAMES, 5, "STEPS") < 0 ||
        check_names(statuses, STATUS_NAMES, 3, "DELIVERY_STATUSES") < 0 || intern_all() < 0)
        return NULL;
    /* OpenExchange: exactly the slots named here */
    PyObject *slots = PyObject_GetAttrString(ox, "__slots__");
    if (slots == NULL)
        return NULL;
    int same = PyTuple_Check(slots) && PyTuple_GET_SIZE(slots) == OX_N;
    for (int k = 0; same && k < OX_N; k++) {
        PyObject *s = PyTuple_GET_ITEM(slots, k);
        same = PyUnicode_Check(s) && PyUnicode_CompareWithASCIIString(s, OX_NAMES[k]) == 0;
    }
    Py_DECREF(slots);
    if (!same) {
        PyErr_SetString(PyExc_ValueError, "OpenExchange.__slots__ is not what exchanges.c "
                        "builds: update OX_NAMES in correlate.c and the step code");
        return NULL;
    }
    for (int k = 0; k < OX_N; k++)
        if (slot_offset(ox, OX_NAMES[k], &A.ox[k]) < 0)
            return NULL;
    {
        const char *const n[] = {"rec", "sess", "connect_seen", "connack_seen", "refused",
                                 "conn_id", "reconnect"};
        Py_ssize_t *const d[] = {&A.c_rec, &A.c_sess, &A.c_connect_seen, &A.c_connack_seen,
                                 &A.c_refused, &A.c_conn_id, &A.c_reconnect};
        if (offsets(conn, n, d, 7) < 0)
            return NULL;
    }
    {
        const char *const n[] = {"code", "rec", "open", "done"};
        Py_ssize_t *const d[] = {&A.s_code, &A.s_rec, &A.s_open, &A.s_done};
        if (offsets(sess, n, d, 4) < 0)
            return NULL;
    }
    {
        const char *const n[] = {"t_last_c2b", "t_last_b2c", "n_packets_c2b", "n_packets_b2c",
                                 "n_bytes_c2b", "n_bytes_b2c", "n_publish_c2b",
                                 "n_publish_b2c", "version"};
        Py_ssize_t *const d[] = {&A.r_t_last[0], &A.r_t_last[1], &A.r_n_packets[0],
                                 &A.r_n_packets[1], &A.r_n_bytes[0], &A.r_n_bytes[1],
                                 &A.r_n_publish[0], &A.r_n_publish[1], &A.r_version};
        if (offsets(connection, n, d, 9) < 0)
            return NULL;
    }
    if (slot_offset(session, "n_exchanges_c2b", &A.se_n_exchanges[0]) < 0 ||
        slot_offset(session, "n_exchanges_b2c", &A.se_n_exchanges[1]) < 0 ||
        slot_offset(reconnect, "resumed", &A.rc_resumed) < 0 ||
        slot_offset(reconnect, "redelivered_publish", &A.rc_publish) < 0 ||
        slot_offset(reconnect, "redelivered_pubrel", &A.rc_pubrel) < 0 ||
        slot_offset(done, "_dict", &A.d_dict) < 0 || slot_offset(done, "_arr", &A.d_arr) < 0 ||
        slot_offset(info, "conn_id", &A.info_conn_id) < 0 ||
        class_int(done, "DICT_LIMIT", &A.dict_limit) < 0 || rowstore_configure(store) < 0)
        return NULL;
    PyObject **dst[] = {(PyObject **)&A.event, (PyObject **)&A.info, (PyObject **)&A.publish,
                        (PyObject **)&A.ack[0], (PyObject **)&A.ack[1], (PyObject **)&A.ack[2],
                        (PyObject **)&A.ack[3], (PyObject **)&A.ping[0],
                        (PyObject **)&A.ping[1], (PyObject **)&A.conn, (PyObject **)&A.sess,
                        (PyObject **)&A.ox_cls, (PyObject **)&A.done,
                        (PyObject **)&A.connection, (PyObject **)&A.session,
                        (PyObject **)&A.reconnect, (PyObject **)&A.matcher, &A.reasons, &A.c2b,
                        &A.b2c, &A.no_ts};
    PyObject *src[] = {event, info, publish, PyTuple_GET_ITEM(acks, 0), PyTuple_GET_ITEM(acks, 1),
                       PyTuple_GET_ITEM(acks, 2), PyTuple_GET_ITEM(acks, 3),
                       PyTuple_GET_ITEM(pings, 0), PyTuple_GET_ITEM(pings, 1), conn, sess, ox,
                       done, connection, session, reconnect, matcher, reasons, c2b, b2c,
                       no_ts};
    for (size_t k = 0; k < sizeof(src) / sizeof(src[0]); k++) {
        Py_INCREF(src[k]);
        Py_XSETREF(*dst[k], src[k]);
    }
    A.ready = 1;
    Py_RETURN_NONE;
}

/* --- one run of the loop ------------------------------------------------------------------------ */

static void run_release(Run *r)
{
    Py_CLEAR(r->conns);
    sv_release(&r->ex);
    sv_release(&r->q0);
    Py_CLEAR(r->last_info);
    Py_CLEAR(r->last_conn);
    Py_CLEAR(r->names);
    matcher_release(&r->m);
}

/* Map the exchange store's columns to OpenExchange slots (what store.getter reads): 1, or 0
 * when a column is not an OpenExchange attribute. */
static int map_columns(Run *r)
{
    PyObject *names = SLOT(r->ex.store, RS.names);
    if (names == NULL || !PyTuple_Check(names) || PyTuple_GET_SIZE(names) > OX_N)
        return 0;
    if (names == r->names)
        return 1; /* mapped at an earlier load */
    Py_CLEAR(r->names);
    r->ncols = PyTuple_GET_SIZE(names);
    for (Py_ssize_t k = 0; k < r->ncols; k++) {
        PyObject *name = PyTuple_GET_ITEM(names, k);
        int found = -1;
        for (int j = 0; found < 0 && j < OX_N; j++)
            if (PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, OX_NAMES[j]) == 0)
                found = j;
        if (found < 0)
            return 0;
        r->cols[k] = A.ox[found];
    }
    for (int k = 0; k < XC_N; k++)
        r->xc[k] = sv_col(&r->ex, XC_NAMES[k]);
    r->names = Py_NewRef(names);
    return 1;
}

/* The QoS 0 store of a report: the one column dup_first. */
static int report_q0(PyObject *store)
{
    PyObject *names = SLOT(store, RS.names);
    return names != NULL && PyTuple_Check(names) && PyTuple_GET_SIZE(names) == 1 &&
           PyUnicode_Check(PyTuple_GET_ITEM(names, 0)) &&
           PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(names, 0), "dup_first") == 0;
}

/* Read the correlator's state: 1 it can run here, 0 not (the Python loop goes on), -1 error. */
static int run_load(Run *r)
{
    PyObject *x = PyObject_GetAttr(r->corr, N.detail);
    if (x == NULL)
        return -1;
    Py_DECREF(x);
    if (x != Py_False)
        return 0; /* the full tables (packets, topics, every column) are Python's */
    if ((x = PyObject_GetAttr(r->corr, N.packets)) == NULL)
        return -1;
    Py_DECREF(x);
    if (x != Py_None)
        return 0;
    PyObject *ex = NULL, *q0 = NULL;
    if (getattr_into(&r->conns, r->corr, N.conns) ||
        getattr_into(&ex, r->corr, N.exchanges) || getattr_into(&q0, r->corr, N.q0) ||
        getattr_into(&r->last_info, r->corr, N.last_info) ||
        getattr_into(&r->last_conn, r->corr, N.last_conn)) {
        Py_XDECREF(ex);
        Py_XDECREF(q0);
        return -1;
    }
    int rc = sv_load(&r->ex, ex);
    if (rc > 0)
        rc = sv_load(&r->q0, q0);
    Py_DECREF(ex);
    Py_DECREF(q0);
    if (rc <= 0)
        return rc;
    if (!PyDict_CheckExact(r->conns) || !report_q0(r->q0.store) || !map_columns(r))
        return 0;
    PyObject *counters[] = {N.n_events, N.t_lo, N.t_hi, N.next_ex_id, N.n_open_total,
                            N.max_per, N.max_total};
    long long *values[] = {&r->n_events, &r->t_lo, &r->t_hi, &r->next_ex_id, &r->n_open,
                           &r->max_per, &r->max_total};
    for (int k = 0; k < 7; k++) {
        int got = getattr_ll(r->corr, counters[k], values[k]);
        if (got != 0)
            return got < 0 ? -1 : 0;
    }
    if (r->n_events < 0 || r->n_events > LLONG_MAX / 2 || r->next_ex_id < 0 ||
        r->next_ex_id > LLONG_MAX / 2 || r->n_open < 0 || r->n_open > LLONG_MAX / 2)
        return 0;
    if ((x = PyObject_GetAttr(r->corr, N.matcher)) == NULL)
        return -1;
    rc = 1;
    if (x == Py_None)
        matcher_release(&r->m);
    else
        rc = matcher_load(&r->m, x, A.matcher);
    Py_DECREF(x);
    return rc;
}

/* Write the counters back (before Python runs, and at the end). */
static int run_store(Run *r)
{
    if (setattr_ll(r->corr, N.n_events, r->n_events) < 0 ||
        setattr_ll(r->corr, N.t_lo, r->t_lo) < 0 || setattr_ll(r->corr, N.t_hi, r->t_hi) < 0 ||
        setattr_ll(r->corr, N.next_ex_id, r->next_ex_id) < 0 ||
        setattr_ll(r->corr, N.n_open_total, r->n_open) < 0 ||
        PyObject_SetAttr(r->corr, N.last_info, r->last_info) < 0 ||
        PyObject_SetAttr(r->corr, N.last_conn, r->last_conn) < 0 || sv_sync(&r->ex) < 0 ||
        sv_sync(&r->q0) < 0)
        return -1;
    return matcher_store(&r->m);
}

/* --- the loop ------------------------------------------------------------------------------------ */

/* Correlator._packet up to the dispatch on the packet type. */
int preamble(Run *r, const Ev *e)
{
    r->n_events++;
    if (e->ts > r->t_hi)
        r->t_hi = e->ts;
    if (e->ts < r->t_lo) /* not else: the first event sets both */
        r->t_lo = e->ts;
    if (e->info != r->last_info) {
        Py_INCREF(e->info);
        Py_SETREF(r->last_info, e->info);
        Py_INCREF(e->c);
        Py_SETREF(r->last_conn, e->c);
    }
    slot_set(e->rec, A.r_t_last[e->d], Py_NewRef(e->ts_obj));
    if (slot_set_ll(e->rec, A.r_n_packets[e->d], e->n_packets + 1) < 0 ||
        slot_set_ll(e->rec, A.r_n_bytes[e->d], e->n_bytes + e->wire_len) < 0)
        return -1;
    return 0;
}

/* One event: 1 taken here, 0 for the Python correlator (nothing changed), -1 error. */
static int fast_event(Run *r, PyObject *ev)
{
    if (!Py_IS_TYPE(ev, A.event) || PyTuple_GET_SIZE(ev) != 9)
        return 0;
    Ev e = {ev, PyTuple_GET_ITEM(ev, 0), PyTuple_GET_ITEM(ev, 1), NULL, NULL, NULL,
            PyTuple_GET_ITEM(ev, 3), PyTuple_GET_ITEM(ev, 5), 0, 0, 0, 0, 0};
    PyObject *dir = PyTuple_GET_ITEM(ev, 2), *version = PyTuple_GET_ITEM(ev, 7);
    if (dir == A.c2b)
        e.d = 0;
    else if (dir == A.b2c)
        e.d = 1;
    else
        return 0;
    PyTypeObject *pt = Py_TYPE(e.p);
    int ptype = 0;
    if (pt == A.publish)
        ptype = 3;
    else if (pt == A.ack[0] || pt == A.ack[1] || pt == A.ack[2] || pt == A.ack[3])
        ptype = pt == A.ack[0] ? 4 : pt == A.ack[1] ? 5 : pt == A.ack[2] ? 6 : 7;
    else if (pt != A.ping[0] && pt != A.ping[1])
        return 0;
    if (exact_ll(e.ts_obj, &e.ts) < 0 || exact_ll(PyTuple_GET_ITEM(ev, 4), &e.wire_len) < 0 ||
        e.wire_len < 0 || e.wire_len > (1LL << 40))
        return 0;
    /* the connection: the one of the packet before, or by id (a new one is Python's) */
    if (e.info == r->last_info)
        e.c = r->last_conn;
    else {
        if (!Py_IS_TYPE(e.info, A.info))
            return 0;
        PyObject *id = SLOT(e.info, A.info_conn_id);
        if (id == NULL || !PyLong_CheckExact(id))
            return 0;
        e.c = PyDict_GetItemWithError(r->conns, id);
        if (e.c == NULL)
            return PyErr_Occurred() ? -1 : 0;
    }
    if (e.c == NULL || !Py_IS_TYPE(e.c, A.conn))
        return 0;
    e.rec = SLOT(e.c, A.c_rec);
    e.s = SLOT(e.c, A.c_sess);
    if (e.rec == NULL || !Py_IS_TYPE(e.rec, A.connection) || e.s == NULL ||
        !Py_IS_TYPE(e.s, A.sess))
        return 0;
    PyObject *rver = SLOT(e.rec, A.r_version);
    if (rver == NULL || (rver == Py_None && version != Py_None))
        return 0; /* the version is learned here */
    if (slot_ll(e.rec, A.r_n_packets[e.d], &e.n_packets) < 0 ||
        slot_ll(e.rec, A.r_n_bytes[e.d], &e.n_bytes) < 0 || e.n_packets < 0 ||
        e.n_packets > LLONG_MAX / 2 || e.n_bytes < 0 || e.n_bytes > LLONG_MAX / 2)
        return 0;
    if (ptype == 3)
        return fast_publish(r, &e);
    if (ptype)
        return fast_ack(r, &e, ptype);
    /* PINGREQ / PINGRESP: nothing but the bookkeeping once CONNECT was seen */
    if (slot_bool(e.c, A.c_connect_seen) != 1)
        return 0;
    return preamble(r, &e) < 0 ? -1 : 1;
}

PyObject *sp_correlate(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyIter_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "correlate(correlator, iterator)");
        return NULL;
    }
    if (!A.ready) {
        PyErr_SetString(PyExc_RuntimeError, "configure_analysis first");
        return NULL;
    }
    Run r;
    memset(&r, 0, sizeof(r));
    r.corr = args[0];
    PyObject *it = args[1];
    int ok = run_load(&r);
    if (ok <= 0) {
        run_release(&r);
        return ok < 0 ? NULL : Py_NewRef(Py_False);
    }
    PyObject *ev;
    while ((ev = PyIter_Next(it)) != NULL) {
        int got = fast_event(&r, ev);
        if (got == 1) {
            Py_DECREF(ev);
            continue;
        }
        if (got < 0) {
            Py_DECREF(ev);
            goto error;
        }
        /* the Python correlator takes it, with the counters as they stand */
        if (run_store(&r) < 0) {
            Py_DECREF(ev);
            goto error;
        }
        PyObject *res = PyObject_CallMethodOneArg(
            r.corr, Py_IS_TYPE(ev, A.event) ? N.packet_meth : N.feed_meth, ev);
        Py_DECREF(ev);
        if (res == NULL)
            goto error_stored;
        Py_DECREF(res);
        ok = run_load(&r);
        if (ok <= 0) {
            run_release(&r);
            return ok < 0 ? NULL : Py_NewRef(Py_False);
        }
    }
    if (PyErr_Occurred())
        goto error; /* from the iterator: everything before it was taken */
    if (run_store(&r) < 0)
        goto error_stored;
    run_release(&r);
    Py_RETURN_TRUE;
error:
    {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (run_store(&r) < 0)
            PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
error_stored:
    run_release(&r);
    return NULL;
}
