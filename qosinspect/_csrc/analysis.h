/* Shared declarations of the analysis fast path (see correlate.c for the why):
 *
 *   correlate.c   configure_analysis, the loop of Correlator.consume (report mode), the
 *                 bookkeeping of every packet and the hand-back of every other event;
 *   exchanges.c   the common exchange steps (a new PUBLISH, the first acknowledgement of a step);
 *   deliveries.c  DeliveryMatcher.publish / .deliver of a narrow (report) matcher;
 *   rowstore.c    rows put on a RowStore's batch, as the Python code puts them.
 */
#ifndef QOSINSPECT_ANALYSIS_H
#define QOSINSPECT_ANALYSIS_H

#include "speedups.h"


/* setattr(o, name, int(v)): 0, or -1 with an exception. */
static inline int setattr_ll(PyObject *o, PyObject *name, long long v)
{
    PyObject *x = PyLong_FromLongLong(v);
    if (x == NULL)
        return -1;
    int rc = PyObject_SetAttr(o, name, x);
    Py_DECREF(x);
    return rc;
}

/* getattr(o, name) as an exact int that fits in 64 bits: 0, 1 (not such an int), -1
 * (exception) */
static inline int getattr_ll(PyObject *o, PyObject *name, long long *v)
{
    PyObject *x = PyObject_GetAttr(o, name);
    if (x == NULL)
        return -1;
    int rc = exact_ll(x, v);
    Py_DECREF(x);
    return rc < 0 ? 1 : 0;
}

/* Replace *dst by getattr(obj, name): 0, or -1 with an exception. */
static inline int getattr_into(PyObject **dst, PyObject *obj, PyObject *name)
{
    PyObject *x = PyObject_GetAttr(obj, name);
    if (x == NULL)
        return -1;
    Py_XSETREF(*dst, x);
    return 0;
}

/* --- rowstore.c ----------------------------------------------------------------------------- */
typedef struct {
    PyTypeObject *cls;
    /* slot offsets */
    Py_ssize_t batch, packed, names, spec, size, buf, bufs, starts, off, left;
    Py_ssize_t rows_per_flush; /* RowStore.BATCH */
    PyObject *flush, *new_chunk; /* method names */
} RowStoreSlots;
extern RowStoreSlots RS;

int rowstore_configure(PyObject *cls);
/* store.batch.append(row) (row stolen; NULL: an exception is set): the row's index
 * (store.packed + its place on the batch), or -1 with an exception. */
long long rows_put(PyObject *store, PyObject *row);
/* store.flush() when the batch holds RowStore.BATCH rows: 0, or -1 with an exception. */
int rows_flush_full(PyObject *store);

/* A RowStore being written from C (see rowstore.c). */
#define SV_MAX_COLS 64
typedef struct {
    PyObject *store, *spec, *buf; /* strong references; buf: the current chunk */
    char *base;                   /* its bytes */
    long long packed, off, left;  /* the write position, kept here (sv_sync writes it back) */
    Py_ssize_t size;
    int ncols, dirty;
    int width[SV_MAX_COLS];
    Py_ssize_t offs[SV_MAX_COLS];
} StoreView;

/* 1 loaded, 0 this store cannot be written here, -1 exception */
int sv_load(StoreView *v, PyObject *store);
/* Write the position back to the store (before Python code may read it): 0 or -1. */
int sv_sync(StoreView *v);
void sv_release(StoreView *v);
/* Add a row: the values in column order, or `objs` (a tuple to put as it is, the Python way;
 * NULL: use vals). Returns its row index, or -1 with an exception. Call sv_settle() after the
 * caller's own bookkeeping of the row (Python's "flush when the batch is full"). */
long long sv_append(StoreView *v, const long long *vals, PyObject *objs);
int sv_settle(StoreView *v);
/* The bytes of a packed row, or NULL (no exception) when it is not packed: leave it to Python. */
char *sv_row(StoreView *v, long long row);
/* The column of that name, or -1 when the store has no such column. */
int sv_col(const StoreView *v, const char *name);
long long sv_get(const StoreView *v, const char *row, int col);
int sv_fits(const StoreView *v, int col, long long x);
void sv_set(const StoreView *v, char *row, int col, long long x);

/* --- deliveries.c --------------------------------------------------------------------------- */
/* A narrow DeliveryMatcher while the fast loop runs. The ring arrays (array.array, never
 * resized) are used through their buffers; the dicts and lists through the C API; the three
 * counters (_head, _tail, unmatched) are kept here and written back (matcher_store) before any
 * Python code of the correlator runs, and read again after it (matcher_load). */
typedef struct {
    PyObject *obj; /* NULL: no matcher */
    PyObject *pending, *expect, *expect_cache, *many, *presence;
    StoreView rows;
    PyObject *arrays[8];
    Py_buffer views[8];
    int nviews;
    long long *a_ts, *a_ex, *a_key;
    signed char *a_qos;
    int *a_pub, *a_topic, *a_got, *a_got2;
    long long head, tail, unmatched, cap, window;
} Matcher;

int matcher_configure(void);
/* 1 loaded, 0 this matcher cannot run here (nothing changed), -1 exception. */
int matcher_load(Matcher *m, PyObject *obj, PyTypeObject *cls);
/* Write the counters back: 0, or -1 with an exception. */
int matcher_store(Matcher *m);
void matcher_release(Matcher *m);
/* Whether publish(ts) can run here: ts - window_ns does not overflow. */
int matcher_ts_ok(const Matcher *m, long long ts);
/* DeliveryMatcher.publish / .deliver: 0, or -1 with an exception. A report keeps no topic
 * codes: the publication's is -1. */
int matcher_publish(Matcher *m, PyObject *keyobj, long long key, long long ts, long long ex_id,
                    int qos, int publisher, PyObject *topic);
int matcher_deliver(Matcher *m, PyObject *keyobj, long long ts, int qos, int subscriber,
                    int retain);

/* --- correlate.c and exchanges.c ------------------------------------------------------------ */
/* OpenExchange's slots, in the order of its __slots__ (configure_analysis checks the list). */
enum {
    OX_conn_id, OX_content, OX_direction, OX_dup_after_complete, OX_dup_first, OX_ex_id,
    OX_frame, OX_key, OX_last_conn_id, OX_last_step, OX_n_dup, OX_n_puback, OX_n_pubcomp,
    OX_n_publish, OX_n_pubrec, OX_n_pubrel, OX_outcome, OX_packet_id, OX_payload_len,
    OX_puback_reason, OX_pubcomp_reason, OX_pubrec_reason, OX_pubrel_reason, OX_qos, OX_retain,
    OX_session, OX_spans_reconnect, OX_t_end, OX_t_puback, OX_t_puback_last, OX_t_pubcomp,
    OX_t_pubcomp_last, OX_t_publish, OX_t_publish_last, OX_t_pubrec, OX_t_pubrec_last,
    OX_t_pubrel, OX_t_pubrel_last, OX_topic, OX_N
};
extern const char *const OX_NAMES[OX_N];

/* What configure_analysis was given: the classes, slot offsets and shared objects. */
typedef struct {
    int ready;
    PyTypeObject *event, *info, *publish, *ack[4], *ping[2], *conn, *sess, *ox_cls, *done,
        *connection, *session, *reconnect, *matcher;
    PyObject *reasons, *c2b, *b2c, *no_ts, *put;
    Py_ssize_t info_conn_id;
    Py_ssize_t c_rec, c_sess, c_connect_seen, c_connack_seen, c_refused, c_conn_id, c_reconnect;
    Py_ssize_t s_code, s_rec, s_open, s_done;
    Py_ssize_t r_t_last[2], r_n_packets[2], r_n_bytes[2], r_n_publish[2], r_version;
    Py_ssize_t se_n_exchanges[2], rc_resumed, rc_publish, rc_pubrel, d_dict, d_arr;
    Py_ssize_t ox[OX_N];
    long long dict_limit;
} AnalysisConfig;
extern AnalysisConfig A;

/* The columns of a finished exchange's row that a late acknowledgement or a DUP re-send reads or
 * changes (RowStore.get/.set by name); -1 when the store has no such column. */
enum {
    XC_content, XC_qos, XC_outcome, XC_conn_id, XC_last_conn_id, XC_spans_reconnect,
    XC_n_publish, XC_n_dup, XC_dup_after_complete, XC_t_publish_last,
    XC_STEP0, /* then t_, t_*_last, n_, *_reason of puback, pubrec, pubrel, pubcomp */
    XC_N = XC_STEP0 + 16
};
extern const char *const XC_NAMES[XC_N];

/* The correlator's state while the loop runs (correlate.c loads and stores it). */
typedef struct {
    PyObject *corr, *conns, *last_info, *last_conn;
    StoreView ex, q0; /* the exchange and QoS 0 stores */
    PyObject *names;       /* the exchange store's column names, as mapped to cols */
    Py_ssize_t cols[OX_N]; /* the exchange store's columns, as OpenExchange slot offsets */
    Py_ssize_t ncols;
    int xc[XC_N];          /* the columns of XC_NAMES in the exchange store */
    long long n_events, t_lo, t_hi, next_ex_id, n_open, max_per, max_total;
    Matcher m;
} Run;

/* What correlate.c learned about one packet event before changing anything. */
typedef struct {
    PyObject *ev, *ts_obj, *info, *c, *rec, *s, *p, *frame;
    long long ts, wire_len, n_packets, n_bytes;
    int d;
} Ev;

/* correlate.c: the bookkeeping every packet gets (Correlator._packet up to the dispatch). */
int preamble(Run *r, const Ev *e);
/* exchanges.c: 1 taken, 0 for the Python correlator (nothing changed), -1 exception. */
int fast_publish(Run *r, const Ev *e);
int fast_ack(Run *r, const Ev *e, int ptype);

#endif
