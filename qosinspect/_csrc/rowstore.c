/* Rows of a RowStore (qosinspect/analysis/records.py) written from the correlator's fast loop.
 *
 * The Python hot paths (ExchangeTracker._end, the QoS 0 row of _publish, DeliveryMatcher._put)
 * do not pack a row themselves: they append its tuple to `store.batch` and call `store.flush()`
 * when the batch holds RowStore.BATCH rows, which packs them all at once. The C steps do
 * exactly the same, so the packing (and every error it could raise) stays in one place, the
 * Python RowStore, and the bytes are the same by construction.
 */
#include "analysis.h"

RowStoreSlots RS;

int exact_ll(PyObject *x, long long *v)
{
    if (x == NULL || !PyLong_CheckExact(x))
        return -1;
    int overflow = 0;
    *v = PyLong_AsLongLongAndOverflow(x, &overflow);
    if (overflow || (*v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

int rowstore_configure(PyObject *cls)
{
    if (slot_offset(cls, "batch", &RS.batch) < 0 || slot_offset(cls, "packed", &RS.packed) < 0 ||
        slot_offset(cls, "names", &RS.names) < 0)
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
    if (RS.flush == NULL && (RS.flush = PyUnicode_InternFromString("flush")) == NULL)
        return -1;
    Py_INCREF(cls);
    Py_XSETREF(RS.cls, (PyTypeObject *)cls);
    return 0;
}

int rows_ok(PyObject *store)
{
    long long packed;
    if (RS.cls == NULL || !Py_IS_TYPE(store, RS.cls))
        return 0;
    PyObject *batch = SLOT(store, RS.batch);
    return batch != NULL && PyList_CheckExact(batch) && slot_ll(store, RS.packed, &packed) == 0 &&
           packed >= 0 && packed < LLONG_MAX / 2;
}

long long rows_put(PyObject *store, PyObject *row)
{
    /* rows_ok() was true when the loop (re)loaded; Python code that ran since may have
     * replaced either slot, so both are checked again (cheap). */
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

long long rows_add(PyObject *store, PyObject *row)
{
    long long index = rows_put(store, row);
    return index < 0 || rows_flush_full(store) < 0 ? -1 : index;
}
