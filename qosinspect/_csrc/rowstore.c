/* Rows of a RowStore (qosinspect/analysis/records.py, the reference) written, read and changed
 * from the correlator's fast loop.
 *
 * RowStore packs rows with struct ("<" + one of q/i/b per column: little-endian, no padding)
 * into preallocated bytearray chunks; the Python hot paths append row tuples to `batch` and
 * `flush()` packs them BATCH at a time. Why C packs them itself: building a tuple per row and
 * packing it in Python was about a tenth of `qosinspect report` once the loop was in C.
 *
 * A StoreView packs each row straight into the current chunk, where flush would put it: rows
 * are placed one after the other whenever they are packed, so the bytes and the chunk
 * boundaries are the same (a new chunk is made by the store's own _new_chunk). While the loop
 * runs, the write position (packed, _off, _left) is kept in the view and written back
 * (sv_sync) before any Python code that could read it runs. Two cases keep the Python way,
 * exactly: while Python rows wait on `batch` (they come first), and a row whose values are not
 * ints that fit their columns (put on the batch as the tuple Python would put, so that flush
 * raises the error Python's would, at the same moment).
 *
 * A field of a packed row is read or changed in place, as RowStore.get and .set do (a row
 * still on Python's batch is not: the caller leaves that event to Python).
 */
#include "analysis.h"

RowStoreSlots RS;


int rowstore_configure(PyObject *cls)
{
    struct { const char *name; Py_ssize_t *off; } slots[] = {
        {"batch", &RS.batch}, {"packed", &RS.packed}, {"names", &RS.names}, {"spec", &RS.spec},
        {"size", &RS.size}, {"_buf", &RS.buf}, {"_bufs", &RS.bufs}, {"_starts", &RS.starts},
        {"_off", &RS.off}, {"_left", &RS.left},
    };
    for (size_t k = 0; k < sizeof(slots) / sizeof(slots[0]); k++)
        if (slot_offset(cls, slots[k].name, slots[k].off) < 0)
            return -1;
    PyObject *n = PyObject_GetAttrString(cls, "BATCH");
    if (n == NULL)
        return -1;
    long long rows;
    int bad = exact_ll(n, &rows);
    Py_DECREF(n);
    if (bad || rows < 1 || rows > (1 << 20)) {
        PyErr_SetString(PyExc_ValueError, "RowStore.BATCH: a small positive int expected");
        return -1;
    }
    RS.rows_per_flush = (Py_ssize_t)rows;
    if ((RS.flush == NULL && (RS.flush = PyUnicode_InternFromString("flush")) == NULL) ||
        (RS.new_chunk == NULL && (RS.new_chunk = PyUnicode_InternFromString("_new_chunk")) == NULL))
        return -1;
    Py_INCREF(cls);
    Py_XSETREF(RS.cls, (PyTypeObject *)cls);
    return 0;
}

/* --- the Python way: a tuple on the batch ----------------------------------------------------- */

long long rows_put(PyObject *store, PyObject *row)
{
    PyObject *batch = SLOT(store, RS.batch);
    long long packed;
    if (row == NULL)
        return -1;
    if (batch == NULL || !PyList_CheckExact(batch) || slot_ll(store, RS.packed, &packed) < 0) {
        Py_DECREF(row);
        PyErr_SetString(PyExc_SystemError, "RowStore.batch or .packed of unexpected types");
        return -1;
    }
    int rc = PyList_Append(batch, row);
    Py_DECREF(row);
    return rc < 0 ? -1 : packed + PyList_GET_SIZE(batch) - 1;
}

int rows_flush_full(PyObject *store)
{
    PyObject *batch = SLOT(store, RS.batch);
    if (batch == NULL || !PyList_CheckExact(batch) || PyList_GET_SIZE(batch) < RS.rows_per_flush)
        return 0;
    PyObject *res = PyObject_CallMethodNoArgs(store, RS.flush);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

/* --- StoreView --------------------------------------------------------------------------------- */

void sv_release(StoreView *v)
{
    Py_CLEAR(v->store);
    Py_CLEAR(v->spec);
    Py_CLEAR(v->buf);
    v->base = NULL;
    v->dirty = 0;
}

/* The write position and the current chunk, from the store: 1, 0 (unexpected state), -1. */
static int load_position(StoreView *v)
{
    PyObject *store = v->store, *buf = SLOT(store, RS.buf), *batch = SLOT(store, RS.batch);
    v->base = NULL;
    v->dirty = 0;
    if (slot_ll(store, RS.packed, &v->packed) < 0 || slot_ll(store, RS.off, &v->off) < 0 ||
        slot_ll(store, RS.left, &v->left) < 0 || buf == NULL || !PyByteArray_CheckExact(buf) ||
        batch == NULL || !PyList_CheckExact(batch) || v->packed < 0 ||
        v->packed > LLONG_MAX / 2 || v->off < 0 || v->left < 0 ||
        v->left > PY_SSIZE_T_MAX / (v->size + 1) ||
        v->off + v->left * v->size != PyByteArray_GET_SIZE(buf))
        return 0;
    Py_INCREF(buf);
    Py_XSETREF(v->buf, buf);
    v->base = PyByteArray_AS_STRING(buf);
    return 1;
}

int sv_load(StoreView *v, PyObject *store)
{
    if (RS.cls == NULL || !Py_IS_TYPE(store, RS.cls))
        return 0;
    if (v->store != store) {
        sv_release(v);
        v->store = Py_NewRef(store);
    }
    PyObject *spec = SLOT(store, RS.spec);
    if (spec == NULL || !PyTuple_Check(spec))
        return 0;
    if (spec != v->spec) { /* the columns' widths and offsets, from the struct codes */
        Py_CLEAR(v->spec);
        if (PyTuple_GET_SIZE(spec) > SV_MAX_COLS)
            return 0;
        Py_ssize_t off = 0;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(spec); k++) {
            PyObject *col = PyTuple_GET_ITEM(spec, k), *code;
            if (!PyTuple_Check(col) || PyTuple_GET_SIZE(col) != 3 ||
                !PyUnicode_Check(PyTuple_GET_ITEM(col, 0)) ||
                !PyUnicode_Check(code = PyTuple_GET_ITEM(col, 1)) ||
                PyUnicode_GET_LENGTH(code) != 1)
                return 0;
            Py_UCS4 ch = PyUnicode_READ_CHAR(code, 0);
            int width = ch == 'q' ? 8 : ch == 'i' ? 4 : ch == 'b' ? 1 : 0;
            if (!width)
                return 0;
            v->width[k] = width;
            v->offs[k] = off;
            off += width;
        }
        v->ncols = (int)PyTuple_GET_SIZE(spec);
        v->size = off;
        v->spec = Py_NewRef(spec);
    }
    long long size;
    if (v->ncols == 0 || slot_ll(store, RS.size, &size) < 0 || size != v->size)
        return 0;
    return load_position(v);
}

int sv_sync(StoreView *v)
{
    if (v->store == NULL || !v->dirty)
        return 0;
    if (slot_set_ll(v->store, RS.packed, v->packed) < 0 ||
        slot_set_ll(v->store, RS.off, v->off) < 0 || slot_set_ll(v->store, RS.left, v->left) < 0)
        return -1;
    v->dirty = 0;
    return 0;
}

/* After Python code changed the store: read the position again (an error if it is odd now). */
static int reload(StoreView *v)
{
    int rc = load_position(v);
    if (rc == 0)
        PyErr_SetString(PyExc_SystemError, "RowStore state of unexpected types");
    return rc > 0 ? 0 : -1;
}

static int fits(int width, long long x)
{
    return width == 8 || (width == 4 ? x >= INT32_MIN && x <= INT32_MAX : x >= -128 && x <= 127);
}

static void put_le(char *p, int width, long long x)
{
    unsigned long long u = (unsigned long long)x;
    for (int k = 0; k < width; k++)
        p[k] = (char)(u >> (8 * k));
}

long long sv_append(StoreView *v, const long long *vals, PyObject *objs)
{
    int direct = objs == NULL && PyList_GET_SIZE(SLOT(v->store, RS.batch)) == 0;
    for (int k = 0; direct && k < v->ncols; k++)
        direct = fits(v->width[k], vals[k]);
    if (!direct) { /* the Python way: the tuple on the batch (sv_settle flushes) */
        PyObject *row = objs;
        if (row == NULL && (row = PyTuple_New(v->ncols)) != NULL)
            for (int k = 0; k < v->ncols; k++) {
                PyObject *x = PyLong_FromLongLong(vals[k]);
                if (x == NULL) {
                    Py_CLEAR(row);
                    break;
                }
                PyTuple_SET_ITEM(row, k, x);
            }
        else if (row != NULL)
            Py_INCREF(row);
        if (sv_sync(v) < 0) {
            Py_XDECREF(row);
            return -1;
        }
        return rows_put(v->store, row);
    }
    if (v->left == 0) { /* the current chunk is full: the store makes the next one */
        if (sv_sync(v) < 0)
            return -1;
        PyObject *res = PyObject_CallMethodNoArgs(v->store, RS.new_chunk);
        if (res == NULL)
            return -1;
        Py_DECREF(res);
        if (reload(v) < 0)
            return -1;
        if (v->left <= 0) {
            PyErr_SetString(PyExc_SystemError, "RowStore._new_chunk made no room");
            return -1;
        }
    }
    char *p = v->base + v->off;
    for (int k = 0; k < v->ncols; k++)
        put_le(p + v->offs[k], v->width[k], vals[k]);
    v->off += v->size;
    v->left--;
    v->dirty = 1;
    return v->packed++;
}

int sv_settle(StoreView *v)
{
    if (PyList_GET_SIZE(SLOT(v->store, RS.batch)) < RS.rows_per_flush)
        return 0;
    if (rows_flush_full(v->store) < 0)
        return -1;
    return reload(v);
}

char *sv_row(StoreView *v, long long row)
{
    if (row < 0 || row >= v->packed || PyList_GET_SIZE(SLOT(v->store, RS.batch)) > 0)
        return NULL; /* not packed yet (Python's get would flush first) */
    PyObject *starts = SLOT(v->store, RS.starts), *bufs = SLOT(v->store, RS.bufs);
    if (starts == NULL || bufs == NULL || !PyList_CheckExact(starts) ||
        !PyList_CheckExact(bufs) || PyList_GET_SIZE(starts) != PyList_GET_SIZE(bufs))
        return NULL;
    for (Py_ssize_t k = PyList_GET_SIZE(starts) - 1; k >= 0; k--) {
        long long start;
        PyObject *chunk = PyList_GET_ITEM(bufs, k);
        if (exact_ll(PyList_GET_ITEM(starts, k), &start) < 0 || !PyByteArray_CheckExact(chunk))
            return NULL;
        if (start <= row) {
            long long at = (row - start) * v->size;
            if (at + v->size > PyByteArray_GET_SIZE(chunk))
                return NULL;
            return PyByteArray_AS_STRING(chunk) + at;
        }
    }
    return NULL;
}

int sv_col(const StoreView *v, const char *name)
{
    for (int k = 0; k < v->ncols; k++)
        if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(PyTuple_GET_ITEM(v->spec, k), 0),
                                             name) == 0)
            return k;
    return -1;
}

long long sv_get(const StoreView *v, const char *row, int col)
{
    const unsigned char *p = (const unsigned char *)row + v->offs[col];
    int width = v->width[col];
    unsigned long long u = 0;
    for (int k = 0; k < width; k++)
        u |= (unsigned long long)p[k] << (8 * k);
    if (width < 8 && (u >> (8 * width - 1)) & 1)
        u |= ~0ULL << (8 * width); /* sign extension */
    return (long long)u;
}

int sv_fits(const StoreView *v, int col, long long x)
{
    return fits(v->width[col], x);
}

void sv_set(const StoreView *v, char *row, int col, long long x)
{
    put_le(row + v->offs[col], v->width[col], x);
}
