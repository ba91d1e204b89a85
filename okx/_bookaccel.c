/* Optional compiled hot loop for okx.book.OrderBook (see docs/book.md, "Compiled apply loop").
 *
 * apply_side() runs the per-side update loop of OrderBook.apply on the book's own Python
 * structures (the same dicts and lists the pure-Python loop uses), so everything else in the book
 * (snapshots, top(), checksums, the REST bootstrap) is unchanged and the pure loop remains the
 * reference. The semantics are those of the pure loop, statement for statement:
 *
 *   - a size made only of '0' and '.' characters (and not empty) deletes the price;
 *   - a delete of a price not held under that spelling is matched by value, else ignored;
 *   - a new spelling of a held value replaces the level and keeps the new string;
 *   - the side is trimmed to `cap` levels, and the float cache `kf` is rebuilt from the held
 *     prices when it grows past `kf_cap`;
 *   - float(px) errors (ValueError, TypeError) propagate unchanged, so the book invalidates
 *     itself exactly as with the pure loop.
 *
 * Sort keys stay Python floats in `keys`; the bisect reads their C doubles directly, which is
 * where most of the gain over the interpreted loop comes from (no rich-compare calls).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* bisect_left on a list of floats: first i with !(keys[i] < x). NaN compares like Python's. */
static int
bisect_floats(PyObject *keys, double x, Py_ssize_t *out)
{
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(keys);
    PyObject **items = ((PyListObject *)keys)->ob_item;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        PyObject *k = items[mid];
        if (!PyFloat_CheckExact(k)) {
            PyErr_SetString(PyExc_TypeError, "order book sort keys must be floats");
            return -1;
        }
        if (PyFloat_AS_DOUBLE(k) < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    *out = lo;
    return 0;
}

/* Python's `sz < "1" and (sz == "0" or (sz and not sz.strip("0.")))` for a str:
 * non-empty and every character is '0' or '.'. Returns 1, 0, or -1 (TypeError) for a non-str. */
static int
is_zero_size(PyObject *sz)
{
    if (!PyUnicode_Check(sz)) {
        PyErr_Format(PyExc_TypeError, "size must be str, not %.50s", Py_TYPE(sz)->tp_name);
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(sz) < 0)
        return -1;
#endif
    Py_ssize_t n = PyUnicode_GET_LENGTH(sz);
    if (n == 0)
        return 0;
    int kind = PyUnicode_KIND(sz);
    const void *data = PyUnicode_DATA(sz);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c != '0' && c != '.')
            return 0;
    }
    return 1;
}

/* float(px), negated for bids: a new reference, or NULL with ValueError/TypeError set. */
static PyObject *
sort_key(PyObject *px, int negate)
{
    PyObject *f = PyNumber_Float(px);
    if (f == NULL || !negate)
        return f;
    PyObject *neg = PyFloat_FromDouble(-PyFloat_AS_DOUBLE(f));
    Py_DECREF(f);
    return neg;
}

/* kf.get(px), or kf[px] = sort_key(px): a borrowed reference (owned by kf), or NULL. */
static PyObject *
cached_key(PyObject *kf, PyObject *px, int negate)
{
    PyObject *k = PyDict_GetItemWithError(kf, px);
    if (k != NULL || PyErr_Occurred())
        return k;
    k = sort_key(px, negate);
    if (k == NULL)
        return NULL;
    if (PyDict_SetItem(kf, px, k) < 0) {
        Py_DECREF(k);
        return NULL;
    }
    Py_DECREF(k);  /* kf holds it */
    return k;
}

static int
check_float(PyObject *k)
{
    if (!PyFloat_CheckExact(k)) {
        PyErr_SetString(PyExc_TypeError, "order book sort keys must be floats");
        return -1;
    }
    return 0;
}

/* del lst[i] for 0 <= i < len(lst): one memmove, no slice machinery. The list keeps its
 * allocation (it is about to grow again), which CPython's list invariants allow. */
static void
list_del_at(PyObject *lst, Py_ssize_t i)
{
    PyListObject *l = (PyListObject *)lst;
    Py_ssize_t n = Py_SIZE(l);
    PyObject *gone = l->ob_item[i];
    memmove(&l->ob_item[i], &l->ob_item[i + 1], (size_t)(n - i - 1) * sizeof(PyObject *));
    Py_SET_SIZE(l, n - 1);
    Py_DECREF(gone);
}

/* lst.insert(i, item) for 0 <= i <= len(lst): append (which grows the list the usual way), then
 * one memmove instead of PyList_Insert's element-by-element shift. */
static int
list_insert_at(PyObject *lst, Py_ssize_t i, PyObject *item)
{
    if (PyList_Append(lst, item) < 0)  /* takes its own reference */
        return -1;
    PyListObject *l = (PyListObject *)lst;
    Py_ssize_t n = Py_SIZE(l);
    memmove(&l->ob_item[i + 1], &l->ob_item[i], (size_t)(n - 1 - i) * sizeof(PyObject *));
    l->ob_item[i] = item;
    return 0;
}

/* del lv[pxs[i]]; del keys[i]; del pxs[i] */
static int
drop_at(PyObject *lv, PyObject *keys, PyObject *pxs, Py_ssize_t i)
{
    if (PyDict_DelItem(lv, PyList_GET_ITEM(pxs, i)) < 0)
        return -1;
    list_del_at(keys, i);
    list_del_at(pxs, i);
    return 0;
}

static int
apply_level(PyObject *lvl, PyObject *lv, PyObject *kf, PyObject *keys, PyObject *pxs,
            int negate)
{
    PyObject *px, *sz;
    PyObject *px_owned = NULL, *sz_owned = NULL;
    int rc = -1;

    if (PyList_CheckExact(lvl) && PyList_GET_SIZE(lvl) >= 2) {
        /* owned for the duration: nothing below may free them, whatever happens to lvl */
        px = px_owned = Py_NewRef(PyList_GET_ITEM(lvl, 0));
        sz = sz_owned = Py_NewRef(PyList_GET_ITEM(lvl, 1));
    } else {  /* anything indexable, with Python's errors (IndexError, TypeError) */
        px = px_owned = PySequence_GetItem(lvl, 0);
        if (px == NULL)
            return -1;
        sz = sz_owned = PySequence_GetItem(lvl, 1);
        if (sz == NULL)
            goto done;
    }

    /* Prices are the exact strings the parser produced. Anything else (a str subclass could
     * run Python code inside a dict lookup and reorder these lists) is refused. */
    if (!PyUnicode_CheckExact(px)) {
        PyErr_Format(PyExc_TypeError, "price must be str, not %.50s", Py_TYPE(px)->tp_name);
        goto done;
    }
    int zero = is_zero_size(sz);
    if (zero < 0)
        goto done;
    Py_ssize_t i;
    if (zero) {
        /* if lv.pop(px, None) is not None: drop it at its key's position */
        PyObject *held = PyDict_GetItemWithError(lv, px);
        if (held == NULL && PyErr_Occurred())
            goto done;
        if (held != NULL && held != Py_None) {
            if (PyDict_DelItem(lv, px) < 0)
                goto done;
            PyObject *k = PyDict_GetItemWithError(kf, px);
            if (k == NULL) {
                if (!PyErr_Occurred())
                    PyErr_SetObject(PyExc_KeyError, px);
                goto done;
            }
            if (check_float(k) < 0 || bisect_floats(keys, PyFloat_AS_DOUBLE(k), &i) < 0)
                goto done;
            if (i >= PyList_GET_SIZE(keys)) {
                PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
                goto done;
            }
            if (i >= PyList_GET_SIZE(pxs)) {  /* pxs out of step with keys: as Python */
                PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
                goto done;
            }
            list_del_at(keys, i);
            list_del_at(pxs, i);
            rc = 0;
            goto done;
        }
        if (held == Py_None && PyDict_DelItem(lv, px) < 0)  /* pop() removed it all the same */
            goto done;
        /* Not held under this spelling: match by value, else ignore. */
        PyObject *k = cached_key(kf, px, negate);
        if (k == NULL || check_float(k) < 0)
            goto done;
        double x = PyFloat_AS_DOUBLE(k);
        if (bisect_floats(keys, x, &i) < 0)
            goto done;
        if (i < PyList_GET_SIZE(keys) &&
            PyFloat_AS_DOUBLE(PyList_GET_ITEM(keys, i)) == x) {
            if (drop_at(lv, keys, pxs, i) < 0)
                goto done;
        }
        rc = 0;
        goto done;
    }

    int held = PyDict_Contains(lv, px);
    if (held < 0)
        goto done;
    if (!held) {
        PyObject *k = cached_key(kf, px, negate);
        if (k == NULL || check_float(k) < 0)
            goto done;
        double x = PyFloat_AS_DOUBLE(k);
        if (bisect_floats(keys, x, &i) < 0)
            goto done;
        if (i < PyList_GET_SIZE(keys) &&
            PyFloat_AS_DOUBLE(PyList_GET_ITEM(keys, i)) == x) {
            /* same value, new spelling: replace the held level, keep the new string */
            if (PyDict_DelItem(lv, PyList_GET_ITEM(pxs, i)) < 0)
                goto done;
            Py_INCREF(px);
            if (PyList_SetItem(pxs, i, px) < 0)  /* steals the reference */
                goto done;
        } else {
            if (list_insert_at(keys, i, k) < 0 || list_insert_at(pxs, i, px) < 0)
                goto done;
        }
    }
    if (PyDict_SetItem(lv, px, lvl) < 0)
        goto done;
    rc = 0;
done:
    Py_XDECREF(px_owned);
    Py_XDECREF(sz_owned);
    return rc;
}

/* Keep the best `cap` levels; rebuild kf from the held prices when it outgrew kf_cap. */
static int
trim_side(PyObject *lv, PyObject *kf, PyObject *keys, PyObject *pxs, Py_ssize_t cap,
          Py_ssize_t kf_cap)
{
    Py_ssize_t n = PyList_GET_SIZE(keys);
    if (n > cap) {
        for (Py_ssize_t j = cap; j < PyList_GET_SIZE(pxs); j++) {
            if (PyDict_DelItem(lv, PyList_GET_ITEM(pxs, j)) < 0)
                return -1;
        }
        if (PyList_SetSlice(keys, cap, n, NULL) < 0 ||
            PyList_SetSlice(pxs, cap, PyList_GET_SIZE(pxs), NULL) < 0)
            return -1;
    }
    if (PyDict_GET_SIZE(kf) > kf_cap) {
        PyObject *fresh = PyDict_New();
        if (fresh == NULL)
            return -1;
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(pxs); j++) {
            PyObject *px = PyList_GET_ITEM(pxs, j);
            PyObject *k = PyDict_GetItemWithError(kf, px);
            if (k == NULL) {
                if (!PyErr_Occurred())
                    PyErr_SetObject(PyExc_KeyError, px);
                Py_DECREF(fresh);
                return -1;
            }
            if (PyDict_SetItem(fresh, px, k) < 0) {
                Py_DECREF(fresh);
                return -1;
            }
        }
        PyDict_Clear(kf);
        int rc = PyDict_Update(kf, fresh);
        Py_DECREF(fresh);
        return rc;
    }
    return 0;
}

PyDoc_STRVAR(apply_side_doc,
"apply_side(levels, lv, kf, keys, pxs, negate, cap, kf_cap, /) -> None\n\n"
"Apply one side of an order-book update in place (okx.book.OrderBook's hot loop).\n"
"lv: price -> level; kf: price -> sort key (float(px), negated when negate is true);\n"
"keys: sorted sort keys, best first; pxs: prices in the order of keys. Trims to cap levels\n"
"and rebuilds kf from the held prices when it has more than kf_cap entries.");

static PyObject *
apply_side(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_Format(PyExc_TypeError, "apply_side expected 8 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *levels = args[0], *lv = args[1], *kf = args[2], *keys = args[3], *pxs = args[4];
    if (!PyDict_CheckExact(lv) || !PyDict_CheckExact(kf) || !PyList_CheckExact(keys) ||
        !PyList_CheckExact(pxs)) {
        PyErr_SetString(PyExc_TypeError, "apply_side: lv and kf must be dicts, keys and pxs lists");
        return NULL;
    }
    int negate = PyObject_IsTrue(args[5]);
    if (negate < 0)
        return NULL;
    /* Clipped to PY_SSIZE_T_MAX: an unbounded book passes caps like 1 << 64. */
    Py_ssize_t cap = PyNumber_AsSsize_t(args[6], NULL);
    if (cap == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t kf_cap = PyNumber_AsSsize_t(args[7], NULL);
    if (kf_cap == -1 && PyErr_Occurred())
        return NULL;

    if (PyList_GET_SIZE(keys) != PyList_GET_SIZE(pxs)) {
        PyErr_SetString(PyExc_RuntimeError, "apply_side: keys and pxs are out of step");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(levels, "levels must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t j = 0; j < n; j++) {
        if (apply_level(items[j], lv, kf, keys, pxs, negate) < 0) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    if (trim_side(lv, kf, keys, pxs, cap, kf_cap) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"apply_side", (PyCFunction)(void (*)(void))apply_side, METH_FASTCALL, apply_side_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "okx._bookaccel",
    .m_doc = "Compiled per-side apply loop for okx.book.OrderBook (optional).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__bookaccel(void)
{
    return PyModule_Create(&module);
}
