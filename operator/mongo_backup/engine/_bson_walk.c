/* The walks over BSON bytes that run once per document, in C.
 *
 * scan: the content digest's walk. engine/digest.py defines the digest: every document's
 * XXH3-128 summed modulo 2**128. Done in Python, the walk over a batch costs ~1 us per
 * document (the loop, a slice and a hash object per document): more client CPU than the
 * driver spends reading the batch. Here it is ~0.05 us per small document, and the GIL is
 * released while it runs, so a backup's event loop keeps reading the next batch. digest.py
 * holds the same walk in Python for a build without a C compiler; a test checks that both
 * give the same results, byte for byte.
 *
 * array_documents: a find/getMore reply's batch, an array of documents, made the documents
 * back to back that a backup stores (engine/batch_reply.py says why the driver's own
 * conversion is not used). engine/batch_reply.py holds it in Python too, tested the same way.
 *
 * xxhash.h is the xxHash library's own single header (BSD-2-Clause, operator/native/xxhash),
 * inlined here so the module needs no shared library at run time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define XXH_INLINE_ALL
#include "xxhash.h"

#define MIN_DOCUMENT 5 /* int32 length + terminating NUL */

typedef struct {
    uint64_t high;
    uint64_t low;
    Py_ssize_t count;
    Py_ssize_t end; /* where the walk stopped: the buffer's length unless a document is malformed */
} walk_result;

static int32_t read_size(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    return (int32_t)v;
}

/* One document at `pos`: its size, or 0 when it is not a whole, well-framed document. */
static Py_ssize_t document_at(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t len) {
    if (len - pos < MIN_DOCUMENT) {
        return 0;
    }
    int32_t size = read_size(buf + pos);
    if (size < MIN_DOCUMENT || size > len - pos || buf[pos + size - 1] != 0) {
        return 0;
    }
    return (Py_ssize_t)size;
}

static void add_hash(walk_result *r, const unsigned char *doc, Py_ssize_t size) {
    XXH128_hash_t h = XXH3_128bits(doc, (size_t)size);
    uint64_t low = r->low + h.low64;
    r->high += h.high64 + (low < r->low); /* carry; the high word wraps: modulo 2**128 */
    r->low = low;
    r->count += 1;
}

static void walk(const unsigned char *buf, Py_ssize_t len, walk_result *r) {
    Py_ssize_t pos = 0, size;
    while (pos < len && (size = document_at(buf, pos, len)) != 0) {
        add_hash(r, buf + pos, size);
        pos += size;
    }
    r->end = pos;
}

/* walk_with_documents: the same walk, also appending each document to `out` as bytes */
static int walk_collecting(const unsigned char *buf, Py_ssize_t len, walk_result *r, PyObject *out) {
    Py_ssize_t pos = 0, size;
    while (pos < len && (size = document_at(buf, pos, len)) != 0) {
        add_hash(r, buf + pos, size);
        PyObject *doc = PyBytes_FromStringAndSize((const char *)buf + pos, size);
        if (doc == NULL) {
            return -1;
        }
        int failed = PyList_Append(out, doc);
        Py_DECREF(doc);
        if (failed) {
            return -1;
        }
        pos += size;
    }
    r->end = pos;
    return 0;
}

PyDoc_STRVAR(scan_doc,
    "scan(buffer, out=None) -> (high, low, count, end)\n\n"
    "Walk the BSON documents laid back to back in `buffer`: the sum of their XXH3-128 hashes\n"
    "modulo 2**128 as two 64-bit halves, their number, and the offset where the walk stopped\n"
    "(len(buffer) unless the document there is truncated or malformed). When `out` is a list,\n"
    "each document is appended to it as bytes.");

static PyObject *scan(PyObject *module, PyObject *args) {
    Py_buffer view;
    PyObject *out = Py_None;
    if (!PyArg_ParseTuple(args, "y*|O:scan", &view, &out)) {
        return NULL;
    }
    if (out != Py_None && !PyList_Check(out)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "scan: out must be a list or None");
        return NULL;
    }
    walk_result r = {0, 0, 0, 0};
    const unsigned char *buf = (const unsigned char *)view.buf;
    if (out == Py_None) {
        /* the view holds the buffer: hashing needs no Python object, so other threads run */
        Py_BEGIN_ALLOW_THREADS
        walk(buf, view.len, &r);
        Py_END_ALLOW_THREADS
    } else if (walk_collecting(buf, view.len, &r, out) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(KKnn)", (unsigned long long)r.high, (unsigned long long)r.low, r.count, r.end);
}

/* The documents of the BSON array at `buf`, back to back, into `out` (at least `len` bytes):
 * their total size, or -1 with *bad set to the offset where the array is malformed. */
static Py_ssize_t copy_array_documents(const unsigned char *buf, Py_ssize_t len, char *out, Py_ssize_t *bad) {
    if (len < MIN_DOCUMENT || read_size(buf) != len || buf[len - 1] != 0) {
        *bad = 0;
        return -1;
    }
    Py_ssize_t pos = 4, end = len - 1, written = 0;
    while (pos < end) {
        Py_ssize_t element = pos;
        if (buf[pos] != 0x03) { /* every element of a batch is an embedded document */
            *bad = element;
            return -1;
        }
        const unsigned char *nul = memchr(buf + pos + 1, 0, (size_t)(end - pos - 1));
        if (nul == NULL) {
            *bad = element;
            return -1;
        }
        pos = (Py_ssize_t)(nul - buf) + 1;
        Py_ssize_t size = document_at(buf, pos, end);
        if (size == 0) {
            *bad = element;
            return -1;
        }
        memcpy(out + written, buf + pos, (size_t)size);
        written += size;
        pos += size;
    }
    return written;
}

PyDoc_STRVAR(array_documents_doc,
    "array_documents(array) -> bytes\n\n"
    "The documents of a BSON array of documents (its whole bytes: length, elements, NUL), laid\n"
    "back to back. ValueError(offset) when the array or an element at that offset is malformed.");

static PyObject *array_documents(PyObject *module, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*:array_documents", &view)) {
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, view.len); /* the documents are fewer bytes */
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t bad = 0, written;
    char *dst = PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    written = copy_array_documents((const unsigned char *)view.buf, view.len, dst, &bad);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (written < 0) {
        Py_DECREF(out);
        PyObject *offset = PyLong_FromSsize_t(bad);
        if (offset != NULL) {
            PyErr_SetObject(PyExc_ValueError, offset); /* args[0]: the offset, an int */
            Py_DECREF(offset);
        }
        return NULL;
    }
    if (_PyBytes_Resize(&out, written) < 0) {
        return NULL;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {"array_documents", array_documents, METH_VARARGS, array_documents_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_bson_walk",
    "The walks over BSON bytes that run once per document (engine/digest.py, engine/batch_reply.py).",
    -1,
    methods,
};

PyMODINIT_FUNC PyInit__bson_walk(void) {
    return PyModule_Create(&module);
}
