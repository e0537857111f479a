/* The delivery matcher's steps for the correlator's fast loop (correlate.c): publish (with the
 * settling of old publications) and deliver, as DeliveryMatcher.publish, .deliver,
 * ._settle_oldest, ._got_it, ._add and ._row do them in qosinspect/analysis/deliveries.py (the
 * reference, which states the rules), for a matcher made with narrow=True (the report's rows).
 *
 * Why in C: every PUBLISH of a capture goes through the matcher (a publication or a copy), and
 * in Python its ring bookkeeping costs about as much as the exchange step itself.
 *
 * The state is the Python object's own: the ring arrays (array.array, fixed size) are written
 * through their buffers, the dicts and lists through the C API; only the three counters (_head,
 * _tail, unmatched) are kept in C while the loop runs and written back before the correlator's
 * Python code takes an event. The presence callback (who was connected when) and _expected
 * (which subscriptions match a topic) are called as they are, in Python: neither reads the
 * counters.
 */
#include "analysis.h"

enum { DELIVERED = 0, DUPLICATE = 1, NOT_DELIVERED = 2 };

static struct {
    PyObject *zero; /* the reason of a delivered row */
    PyObject *expected, *head, *tail, *unmatched, *max_pending, *window_ns, *narrow, *pending,
        *expect, *expect_cache, *many, *store, *presence, *remove, *arrays[8];
} MN;

/* The ring arrays, in the order of Matcher.arrays, and their array.array typecodes. */
static const char *const ARRAY_NAMES[8] = {"_ts", "_ex", "_key", "_qos", "_pub", "_topic",
                                           "_got", "_got2"};
static const char ARRAY_CODES[8] = {'q', 'q', 'q', 'b', 'i', 'i', 'i', 'i'};

int matcher_configure(void)
{
    struct { PyObject **dst; const char *s; } names[] = {
        {&MN.expected, "_expected"}, {&MN.head, "_head"}, {&MN.tail, "_tail"},
        {&MN.unmatched, "unmatched"}, {&MN.max_pending, "max_pending"},
        {&MN.window_ns, "window_ns"}, {&MN.narrow, "narrow"}, {&MN.pending, "_pending"},
        {&MN.expect, "_expect"}, {&MN.expect_cache, "_expect_cache"}, {&MN.many, "_many"},
        {&MN.store, "store"}, {&MN.presence, "_presence"}, {&MN.remove, "remove"},
    };
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
        if (*names[k].dst == NULL && (*names[k].dst = PyUnicode_InternFromString(names[k].s)) == NULL)
            return -1;
    if (MN.zero == NULL && (MN.zero = PyLong_FromLong(0)) == NULL)
        return -1;
    for (int k = 0; k < 8; k++)
        if (MN.arrays[k] == NULL && (MN.arrays[k] = PyUnicode_InternFromString(ARRAY_NAMES[k])) == NULL)
            return -1;
    return 0;
}

/* --- loading and storing ---------------------------------------------------------------------- */

static void release_views(Matcher *m)
{
    for (int k = 0; k < m->nviews; k++)
        PyBuffer_Release(&m->views[k]);
    m->nviews = 0;
    for (int k = 0; k < 8; k++)
        Py_CLEAR(m->arrays[k]);
}

void matcher_release(Matcher *m)
{
    release_views(m);
    Py_CLEAR(m->obj);
    Py_CLEAR(m->pending);
    Py_CLEAR(m->expect);
    Py_CLEAR(m->expect_cache);
    Py_CLEAR(m->many);
    Py_CLEAR(m->presence);
    sv_release(&m->rows);
}

int matcher_load(Matcher *m, PyObject *obj, PyTypeObject *cls)
{
    if (!Py_IS_TYPE(obj, cls))
        return 0;
    if (m->obj != obj) {
        matcher_release(m);
        m->obj = Py_NewRef(obj);
    }
    PyObject *narrow = PyObject_GetAttr(obj, MN.narrow);
    if (narrow == NULL)
        return -1;
    Py_DECREF(narrow);
    if (narrow != Py_True)
        return 0; /* the full rows (granted QoS, topics, ids) are Python's */
    int rc;
    if ((rc = getattr_ll(obj, MN.head, &m->head)) || (rc = getattr_ll(obj, MN.tail, &m->tail)) ||
        (rc = getattr_ll(obj, MN.unmatched, &m->unmatched)) ||
        (rc = getattr_ll(obj, MN.max_pending, &m->cap)) ||
        (rc = getattr_ll(obj, MN.window_ns, &m->window)))
        return rc < 0 ? -1 : 0;
    if (m->cap < 1 || m->cap > PY_SSIZE_T_MAX / 8 || m->head < 0 || m->tail < m->head ||
        m->tail > LLONG_MAX / 2 || m->window < 0 || m->unmatched < 0 ||
        m->unmatched > LLONG_MAX / 2)
        return 0;
    PyObject *store = NULL;
    if (getattr_into(&m->pending, obj, MN.pending) ||
        getattr_into(&m->expect, obj, MN.expect) ||
        getattr_into(&m->expect_cache, obj, MN.expect_cache) ||
        getattr_into(&m->many, obj, MN.many) || getattr_into(&store, obj, MN.store) ||
        getattr_into(&m->presence, obj, MN.presence)) {
        Py_XDECREF(store);
        return -1;
    }
    rc = sv_load(&m->rows, store);
    Py_DECREF(store);
    if (rc <= 0)
        return rc;
    if (!PyDict_CheckExact(m->pending) || !PyList_CheckExact(m->expect) ||
        PyList_GET_SIZE(m->expect) != m->cap || !PyDict_CheckExact(m->expect_cache) ||
        !PyDict_CheckExact(m->many) || m->rows.ncols != 4)
        return 0;
    static const char *const ROW[4] = {"pub_qos", "sub_qos", "status", "reason"}; /* put_row */
    for (int k = 0; k < 4; k++)
        if (sv_col(&m->rows, ROW[k]) != k)
            return 0;
    /* the ring arrays: viewed again only if the objects changed */
    PyObject *arrays[8];
    int same = m->nviews == 8;
    for (int k = 0; k < 8; k++) {
        arrays[k] = PyObject_GetAttr(obj, MN.arrays[k]);
        if (arrays[k] == NULL) {
            while (k--)
                Py_DECREF(arrays[k]);
            return -1;
        }
        same = same && arrays[k] == m->arrays[k];
    }
    if (same) {
        for (int k = 0; k < 8; k++)
            Py_DECREF(arrays[k]);
        return 1;
    }
    release_views(m);
    for (int k = 0; k < 8; k++)
        m->arrays[k] = arrays[k];
    for (int k = 0; k < 8; k++) {
        Py_buffer *v = &m->views[k];
        if (PyObject_GetBuffer(m->arrays[k], v, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
            PyErr_Clear();
            release_views(m);
            return 0;
        }
        m->nviews = k + 1;
        Py_ssize_t size = ARRAY_CODES[k] == 'q' ? 8 : ARRAY_CODES[k] == 'i' ? 4 : 1;
        if (v->format == NULL || v->format[0] != ARRAY_CODES[k] || v->format[1] != '\0' ||
            v->itemsize != size || v->len != (Py_ssize_t)m->cap * size ||
            (ARRAY_CODES[k] == 'i' && sizeof(int) != 4) ||
            (ARRAY_CODES[k] == 'q' && sizeof(long long) != 8)) {
            release_views(m);
            return 0;
        }
    }
    m->a_ts = m->views[0].buf;
    m->a_ex = m->views[1].buf;
    m->a_key = m->views[2].buf;
    m->a_qos = m->views[3].buf;
    m->a_pub = m->views[4].buf;
    m->a_topic = m->views[5].buf;
    m->a_got = m->views[6].buf;
    m->a_got2 = m->views[7].buf;
    return 1;
}

int matcher_store(Matcher *m)
{
    if (m->obj == NULL)
        return 0;
    if (setattr_ll(m->obj, MN.head, m->head) < 0 || setattr_ll(m->obj, MN.tail, m->tail) < 0 ||
        setattr_ll(m->obj, MN.unmatched, m->unmatched) < 0)
        return -1;
    return sv_sync(&m->rows);
}

int matcher_ts_ok(const Matcher *m, long long ts)
{
    return ts >= LLONG_MIN + m->window;
}

/* --- the steps ----------------------------------------------------------------------------------- */

/* _row(seq, ...) of a narrow matcher: (pub_qos, sub_qos, status, reason), put as
 * RowStore.append does; a reason that is not an exact int goes in as it came (the Python way,
 * see rowstore.c) */
static int put_row(Matcher *m, Py_ssize_t i, long long sub_qos, int status, PyObject *reason)
{
    long long vals[4] = {m->a_qos[i], sub_qos, status, 0};
    PyObject *objs = NULL;
    if (exact_ll(reason, &vals[3]) < 0 &&
        (objs = Py_BuildValue("(iLiO)", (int)m->a_qos[i], sub_qos, status, reason)) == NULL)
        return -1;
    long long index = sv_append(&m->rows, vals, objs);
    Py_XDECREF(objs);
    return index < 0 || sv_settle(&m->rows) < 0 ? -1 : 0;
}

/* _got_it: 1, 0, or -1 with an exception */
static int got_it(Matcher *m, long long seq, long long subscriber)
{
    Py_ssize_t i = (Py_ssize_t)(seq % m->cap);
    if (m->a_got[i] == subscriber || m->a_got2[i] == subscriber)
        return 1;
    if (m->a_got2[i] < 0)
        return 0;
    PyObject *k = PyLong_FromLongLong(seq);
    if (k == NULL)
        return -1;
    PyObject *t = PyDict_GetItemWithError(m->many, k);
    Py_DECREF(k);
    if (t == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *s = PyLong_FromLongLong(subscriber);
    if (s == NULL)
        return -1;
    Py_INCREF(t);
    int rc = PySequence_Contains(t, s);
    Py_DECREF(t);
    Py_DECREF(s);
    return rc;
}

/* _add */
static int add(Matcher *m, long long seq, int subscriber)
{
    Py_ssize_t i = (Py_ssize_t)(seq % m->cap);
    if (m->a_got[i] < 0) {
        m->a_got[i] = subscriber;
        return 0;
    }
    if (m->a_got2[i] < 0) {
        m->a_got2[i] = subscriber;
        return 0;
    }
    /* self._many[seq] = (*self._many.get(seq, ()), subscriber) */
    PyObject *k = PyLong_FromLongLong(seq), *old = NULL, *s = PyLong_FromLong(subscriber);
    PyObject *grown = NULL;
    int rc = -1;
    if (k == NULL || s == NULL)
        goto out;
    old = PyDict_GetItemWithError(m->many, k);
    if (old == NULL && PyErr_Occurred())
        goto out;
    PyObject *items = old == NULL ? PyTuple_New(0) : PySequence_Tuple(old);
    if (items == NULL)
        goto out;
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    grown = PyTuple_New(n + 1);
    if (grown == NULL) {
        Py_DECREF(items);
        goto out;
    }
    for (Py_ssize_t j = 0; j < n; j++)
        PyTuple_SET_ITEM(grown, j, Py_NewRef(PyTuple_GET_ITEM(items, j)));
    Py_DECREF(items);
    PyTuple_SET_ITEM(grown, n, Py_NewRef(s));
    rc = PyDict_SetItem(m->many, k, grown);
out:
    Py_XDECREF(k);
    Py_XDECREF(s);
    Py_XDECREF(grown);
    return rc;
}

static int bad_pending(void)
{
    PyErr_SetString(PyExc_SystemError, "DeliveryMatcher._pending holds an unexpected value");
    return -1;
}

int matcher_deliver(Matcher *m, PyObject *keyobj, long long ts, int qos, int subscriber,
                    int retain)
{
    PyObject *found = PyDict_GetItemWithError(m->pending, keyobj);
    if (found == NULL) {
        if (PyErr_Occurred())
            return -1;
        m->unmatched++;
        return 0;
    }
    Py_INCREF(found);
    int rc = -1, single = PyLong_CheckExact(found);
    long long seq, already = -1;
    if (single) {
        if (exact_ll(found, &seq) < 0 || seq < 0) {
            rc = bad_pending();
            goto out;
        }
        Py_ssize_t i = (Py_ssize_t)(seq % m->cap);
        if (m->a_got[i] < 0 && m->a_ts[i] <= ts) { /* the common case: a first copy */
            m->a_got[i] = subscriber;
            rc = put_row(m, i, qos, DELIVERED, MN.zero);
            goto out;
        }
    }
    else if (!PyList_CheckExact(found)) {
        rc = bad_pending();
        goto out;
    }
    for (Py_ssize_t k = 0; single ? k < 1 : k < PyList_GET_SIZE(found); k++) {
        if (!single && exact_ll(PyList_GET_ITEM(found, k), &seq) < 0) {
            rc = bad_pending();
            goto out;
        }
        if (seq < 0) {
            rc = bad_pending();
            goto out;
        }
        Py_ssize_t i = (Py_ssize_t)(seq % m->cap);
        if (m->a_ts[i] > ts)
            break;
        int g = got_it(m, seq, subscriber);
        if (g < 0)
            goto out;
        if (!g) {
            if (add(m, seq, subscriber) < 0)
                goto out;
            rc = put_row(m, i, qos, DELIVERED, MN.zero);
            goto out;
        }
        already = seq;
    }
    if (already < 0 || retain) {
        /* nothing published before it (or a retained copy of an old message): not a match */
        m->unmatched++;
        rc = 0;
        goto out;
    }
    rc = put_row(m, (Py_ssize_t)(already % m->cap), qos, DUPLICATE, MN.zero);
out:
    Py_DECREF(found);
    return rc;
}

/* _settle_oldest: write the expected copies of the oldest publication that never came. */
static int settle_oldest(Matcher *m)
{
    long long seq = m->head;
    m->head = seq + 1;
    Py_ssize_t i = (Py_ssize_t)(seq % m->cap);
    PyObject *expect = PyList_GET_ITEM(m->expect, i); /* taken over: the slot becomes None */
    PyList_SET_ITEM(m->expect, i, Py_NewRef(Py_None));
    long long publisher = m->a_pub[i], ts = m->a_ts[i];
    int rc = -1, truth = PyObject_IsTrue(expect);
    if (truth < 0)
        goto out;
    if (truth) {
        if (!PyDict_CheckExact(expect)) {
            PyErr_SetString(PyExc_SystemError, "DeliveryMatcher._expect holds a non-dict");
            goto out;
        }
        Py_ssize_t pos = 0;
        PyObject *session, *value;
        while (PyDict_Next(expect, &pos, &session, &value)) {
            long long code;
            if (exact_ll(session, &code) < 0 || !PyTuple_Check(value) ||
                PyTuple_GET_SIZE(value) != 2) {
                PyErr_SetString(PyExc_SystemError, "unexpected expectation in DeliveryMatcher");
                goto out;
            }
            int no_local = PyObject_IsTrue(PyTuple_GET_ITEM(value, 1));
            if (no_local < 0)
                goto out;
            int g = got_it(m, seq, code);
            if (g < 0)
                goto out;
            if (g || (no_local && code == publisher))
                continue;
            /* reason = self._presence(session, ts), put in the row as it came */
            Py_INCREF(session);
            PyObject *t = PyLong_FromLongLong(ts);
            PyObject *reason = t ? PyObject_CallFunctionObjArgs(m->presence, session, t, NULL)
                                 : NULL;
            Py_XDECREF(t);
            Py_DECREF(session);
            if (reason == NULL)
                goto out;
            int bad = put_row(m, i, -1, NOT_DELIVERED, reason);
            Py_DECREF(reason);
            if (bad < 0)
                goto out;
        }
    }
    PyObject *k;
    if (PyDict_GET_SIZE(m->many)) {
        /* self._many.pop(seq, None) */
        if ((k = PyLong_FromLongLong(seq)) == NULL)
            goto out;
        int r = PyDict_DelItem(m->many, k);
        Py_DECREF(k);
        if (r < 0) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError))
                goto out;
            PyErr_Clear();
        }
    }
    if ((k = PyLong_FromLongLong(m->a_key[i])) == NULL)
        goto out;
    PyObject *found = PyDict_GetItemWithError(m->pending, k);
    long long first;
    if (found == NULL) {
        rc = PyErr_Occurred() ? -1 : 0;
    }
    else if (PyLong_CheckExact(found) && exact_ll(found, &first) == 0 && first == seq) {
        rc = PyDict_DelItem(m->pending, k);
    }
    else if (PyList_CheckExact(found)) {
        /* the oldest of its content: at the front */
        Py_INCREF(found);
        PyObject *s = PyLong_FromLongLong(seq);
        PyObject *r = s ? PyObject_CallMethodOneArg(found, MN.remove, s) : NULL;
        Py_XDECREF(s);
        if (r != NULL) {
            Py_DECREF(r);
            rc = PyList_GET_SIZE(found) == 1
                     ? PyDict_SetItem(m->pending, k, PyList_GET_ITEM(found, 0)) : 0;
        }
        Py_DECREF(found);
    }
    else
        rc = 0;
    Py_DECREF(k);
out:
    Py_DECREF(expect);
    return rc;
}

int matcher_publish(Matcher *m, PyObject *keyobj, long long key, long long ts, long long ex_id,
                    int qos, int publisher, PyObject *topic)
{
    long long cap = m->cap;
    if (m->head < m->tail) {
        long long horizon = ts - m->window; /* matcher_ts_ok(): no overflow */
        while (m->head < m->tail &&
               (m->tail - m->head >= cap || m->a_ts[m->head % cap] < horizon))
            if (settle_oldest(m) < 0)
                return -1;
    }
    long long seq = m->tail;
    m->tail = seq + 1;
    Py_ssize_t i = (Py_ssize_t)(seq % cap);
    m->a_ts[i] = ts;
    m->a_ex[i] = ex_id;
    m->a_key[i] = key;
    m->a_qos[i] = (signed char)qos;
    m->a_pub[i] = publisher;
    m->a_topic[i] = -1;                 /* no topic codes in a report */
    m->a_got[i] = -1;
    m->a_got2[i] = -1;
    PyObject *expect = PyDict_GetItemWithError(m->expect_cache, topic);
    if (expect != NULL)
        Py_INCREF(expect);
    else if (PyErr_Occurred() ||
             (expect = PyObject_CallMethodOneArg(m->obj, MN.expected, topic)) == NULL)
        return -1;
    if (PyList_SetItem(m->expect, i, expect) < 0) /* steals; drops the old value */
        return -1;
    PyObject *old = PyDict_GetItemWithError(m->pending, keyobj);
    if (old == NULL && PyErr_Occurred())
        return -1;
    PyObject *s = PyLong_FromLongLong(seq);
    if (s == NULL)
        return -1;
    int rc;
    if (old == NULL)
        rc = PyDict_SetItem(m->pending, keyobj, s);
    else if (PyList_CheckExact(old))
        rc = PyList_Append(old, s);
    else {
        PyObject *pair = PyList_New(2);
        rc = -1;
        if (pair != NULL) {
            PyList_SET_ITEM(pair, 0, Py_NewRef(old));
            PyList_SET_ITEM(pair, 1, Py_NewRef(s));
            rc = PyDict_SetItem(m->pending, keyobj, pair);
            Py_DECREF(pair);
        }
    }
    Py_DECREF(s);
    return rc;
}
