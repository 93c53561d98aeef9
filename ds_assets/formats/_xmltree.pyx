# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The tree path's row conversion (`xml._Converter.struct`), compiled: libxml2's tree read in C.

Written because no library does it and it is measurably faster: reading a row through lxml's
element API creates a Python proxy object for every element and a string for every tag, and
that is most of a nested row's cost (`bench/xml_bench.py`). `Walker(converter)(row, node)`
returns the dict `converter.struct(row, node)` returns, reading libxml2's nodes directly, with
each value as libxml2's UTF-8 bytes (pyarrow takes them for string columns as they are, where a
`str` would be decoded here and encoded again there); whatever is not plain elements, attributes and text (entity references, XInclude
nodes), and every error, goes to the Python code itself: the former by converting the whole row
there, the latter by calling the converter's own methods, so messages and specs stay the same.

It reads the public layout of libxml2's `xmlNode`, `xmlAttr`, `xmlNs` (stable since libxml2
2.0) and of lxml's `_Element` (document, node), declared below rather than taken from headers
so that building needs nothing but Python's; `check()` verifies the layout on a parsed document
before `xml.py` uses the walker, which otherwise keeps the pure Python path.
"""

from cpython.object cimport PyObject
from cpython.bytes cimport PyBytes_FromString
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport strcmp, strlen

cdef extern from *:
    """
    /* libxml2's public node structs (tree.h): only the leading fields read here */
    typedef struct _dsa_ns { struct _dsa_ns *next; int type; const char *href;
                             const char *prefix; } dsa_ns;
    typedef struct _dsa_node {
        void *_private; int type; const char *name;
        struct _dsa_node *children, *last, *parent, *next, *prev;
        void *doc; dsa_ns *ns; char *content; struct _dsa_attr *properties;
    } dsa_node;
    typedef struct _dsa_attr {
        void *_private; int type; const char *name;
        dsa_node *children, *last, *parent; struct _dsa_attr *next, *prev;
        void *doc; dsa_ns *ns;
    } dsa_attr;
    /* lxml's _Element (etree.h: LxmlElement) */
    typedef struct { PyObject_HEAD PyObject *_doc; dsa_node *_c_node; } dsa_element;
    """
    ctypedef struct dsa_ns:
        const char* href
    ctypedef struct dsa_node:
        int type
        const char* name
        dsa_node* children
        dsa_node* parent
        dsa_node* next
        dsa_ns* ns
        char* content
        dsa_attr* properties
    ctypedef struct dsa_attr:
        const char* name
        dsa_node* children
        dsa_attr* next
        dsa_ns* ns
    ctypedef struct dsa_element:
        dsa_node* _c_node

cdef enum:
    ELEMENT_NODE = 1
    TEXT_NODE = 3
    CDATA_NODE = 4

cdef str TEXT = None  # xml.TEXT
cdef bytes SPACE = None  # xml._SPACE, as bytes: XML's whitespace, trimmed around typed values
cdef object AttributeList = None
cdef object UNKNOWN = None
cdef object ElementType = None


class Unusual(Exception):
    """A node the walker leaves to the Python code (entity reference, XInclude, ...)."""


def configure(text, space, attribute_list, unknown, element_type):
    """Share `xml.py`'s names: `TEXT`, `_SPACE`, the `_AttributeList` class, `_UNKNOWN` and
    lxml's `_Element`."""
    global TEXT, SPACE, AttributeList, UNKNOWN, ElementType
    TEXT, SPACE = text, space.encode()
    AttributeList, UNKNOWN, ElementType = attribute_list, unknown, element_type


cdef inline str utf8(const char* text):
    return PyUnicode_DecodeUTF8(text, strlen(text), NULL)


cdef inline dsa_node* node_of(object element):
    return (<dsa_element*><PyObject*>element)._c_node


cdef enum:
    SLOTS = 1024  # names cached, by the addresses of libxml2's interned strings

cdef const char* cached_name[SLOTS]
cdef const char* cached_href[SLOTS]
cdef list cached = [None] * SLOTS  # per slot: (name bytes, href bytes or None, tag)


cdef str name_of(const char* name, dsa_ns* ns):
    """lxml's tag / attribute key: `{uri}local`, or `local` outside a namespace.

    libxml2 interns names, so the same name comes at the same address: the string made for it
    is kept by address, and checked against a copy of the name (an address can be reused)."""
    cdef const char* href = ns.href if ns is not NULL else NULL
    cdef size_t slot = ((<size_t>name >> 3) ^ (<size_t>href >> 5)) & (SLOTS - 1)
    cdef tuple entry
    if cached_name[slot] == name and cached_href[slot] == href:
        entry = <tuple>cached[slot]
        if strcmp(name, <bytes>entry[0]) == 0 and (
            entry[1] is None if href is NULL
            else entry[1] is not None and strcmp(href, <bytes>entry[1]) == 0
        ):
            return <str>entry[2]
    tag = "{" + utf8(href) + "}" + utf8(name) if href is not NULL else utf8(name)
    entry = (PyBytes_FromString(name), None if href is NULL else PyBytes_FromString(href), tag)
    cached[slot] = entry  # made before the addresses change: they always describe an entry
    cached_name[slot], cached_href[slot] = name, href
    return tag


cdef inline bint is_text(dsa_node* node) noexcept:
    return node.type == TEXT_NODE or node.type == CDATA_NODE


cdef inline const char* content_of(dsa_node* node) noexcept:
    if node.content is NULL:
        return b""
    return node.content


cdef object text_from(dsa_node* node):
    """lxml's `_collectText` as bytes: the text and CDATA nodes from `node` on, joined; None if
    there are none, b"" if all are empty (`.text` from a first child, `.tail` from a next)."""
    cdef dsa_node* first = node
    cdef int count = 0
    cdef const char* last_text = NULL
    while node is not NULL and is_text(node):
        if node.content is not NULL and node.content[0] != 0:
            last_text = node.content
        count += 1
        node = node.next
    if last_text is NULL:
        return b"" if count else None
    if count == 1:
        return PyBytes_FromString(last_text)
    parts = []
    node = first
    while node is not NULL and is_text(node):
        parts.append(PyBytes_FromString(content_of(node)))
        node = node.next
    return b"".join(parts)


cdef bint has_text_from(dsa_node* node) except -1:
    """True if the text nodes from `node` on hold a character that `str.isspace` rejects: what
    `text and not text.isspace()` says of their joined text, without making it."""
    cdef const unsigned char* at
    while node is not NULL and is_text(node):
        at = <const unsigned char*>content_of(node)
        while at[0] != 0:
            if at[0] >= 0x80:  # beyond ASCII: Unicode has more spaces (U+00A0, U+3000...)
                text = utf8(content_of(node))
                if not text.isspace():
                    return True
                break
            if not (at[0] == 32 or 9 <= at[0] <= 13 or 28 <= at[0] <= 31):
                return True
            at += 1
        node = node.next
    return False


cdef int element_children(dsa_node* node) except -1:
    """1 if `node` has child elements (lxml's `len(element)` > 0), else 0; `Unusual` for a child
    that is neither an element nor text."""
    cdef dsa_node* child = node.children
    cdef int found = 0
    while child is not NULL:
        if child.type == ELEMENT_NODE:
            found = 1
        elif not is_text(child):
            raise Unusual
        child = child.next
    return found


cdef int all_text(dsa_node* node, list parts) except -1:
    """`element.itertext()` of an element whose children `element_children` took, as bytes."""
    cdef dsa_node* child = node.children
    while child is not NULL:
        if child.type == ELEMENT_NODE:
            all_text(child, parts)
        elif is_text(child):
            parts.append(PyBytes_FromString(content_of(child)))
        else:
            raise Unusual
        child = child.next
    return 0


cdef bytes itertext(dsa_node* node):
    parts = []
    all_text(node, parts)
    return b"".join(parts)


cdef object attribute_value(dsa_attr* attribute):
    """An attribute's value, as lxml's `_attributeValue` gives it (its text children, joined)."""
    cdef dsa_node* child = attribute.children
    if child is NULL:
        return b""
    if child.next is NULL and child.type == TEXT_NODE:
        return PyBytes_FromString(content_of(child))
    parts = []
    while child is not NULL:
        if child.type != TEXT_NODE:
            raise Unusual
        parts.append(PyBytes_FromString(content_of(child)))
        child = child.next
    return b"".join(parts)


cdef class Walker:
    """`Walker(converter)(row, node)` is `converter.struct(row, node)`, read in C."""

    cdef object converter
    cdef object row  # the row element: the way down to the proxies the converter is given

    def __init__(self, converter):
        self.converter = converter

    def __call__(self, element, node):
        if type(element) is not ElementType:
            return self.converter.struct(element, node)
        self.row = element
        try:
            return self.struct(node_of(element), node)
        except Unusual:
            return self.converter.struct(element, node)
        finally:
            self.row = None

    cdef object proxy(self, dsa_node* node):
        """The lxml element of `node` (in the row), for the converter's methods: the path up
        to the row, then down through lxml's own children."""
        cdef dsa_node* row_node = node_of(self.row)
        path = []
        while node is not row_node:
            path.append(<size_t>node)
            node = node.parent
        element = self.row
        for address in reversed(path):
            element = next(child for child in element if <size_t>node_of(child) == address)
        return element

    cdef dict attributes(self, dsa_node* element, node):
        cdef dict values = {}
        cdef dsa_attr* attribute = element.properties
        verbatim = node.verbatim
        specs = node.attributes
        while attribute is not NULL:
            key = name_of(attribute.name, attribute.ns)
            value = attribute_value(attribute)
            if key in verbatim:
                values[key] = value
            else:
                spec = specs.get(key, UNKNOWN)
                if type(spec) is str:
                    values[spec] = value
                elif spec is UNKNOWN:  # first met: the converter names, checks and records it
                    self.converter._attribute(
                        values, node, key, value.decode(), self.proxy(element), spec
                    )
                elif spec is not None:  # a typed or listed column (`xml._attribute_spec`)
                    if spec.node.strip:
                        value = value.strip(SPACE)
                    values[spec.name] = AttributeList((value,)) if spec.repeated else value
            attribute = attribute.next
        return values

    cdef dict struct(self, dsa_node* element, node):
        cdef dict values
        cdef dsa_node* child
        cdef int kind
        cdef bint has_text
        values = self.attributes(element, node) if element.properties is not NULL else {}
        if element_children(element):
            has_text = has_text_from(element.children)
            children = node.children
            child = element.children
            while child is not NULL:
                if child.type != ELEMENT_NODE:
                    child = child.next
                    continue
                if not has_text and has_text_from(child.next):  # a tail
                    has_text = True
                tag = name_of(child.name, child.ns)
                spec = children.get(tag)
                if spec is None:
                    spec = self.converter._resolve(node, self.proxy(child))
                name, kind, child_node = spec
                if kind == 0 or kind == 1:  # _LEAF, _LEAF_LIST
                    if element_children(child) or child.properties is not NULL:
                        self.converter.struct(self.proxy(child), child_node)  # raises, naming it
                    value = text_from(child.children)
                    if value is None:
                        value = b""
                    if kind == 0:
                        if name in values:
                            self.repeated(element, child, name)
                        values[name] = value
                    else:
                        self.append(values, name, value, element, child)
                elif kind == 2:  # _VALUE
                    if name in values:
                        self.repeated(element, child, name)
                    values[name] = self.value(child, child_node)
                elif kind == 3:  # _VALUE_LIST
                    self.append(values, name, self.value(child, child_node), element, child)
                child = child.next
            if has_text:
                if node.text:
                    text = itertext(element)
                    values[TEXT] = text.strip(SPACE) if node.strip else text
                elif node.strict:
                    self.unknown_text(element)
        elif node.text:
            text = text_from(element.children)
            values[TEXT] = b"" if text is None else text.strip(SPACE) if node.strip else text
        elif node.strict and has_text_from(element.children):
            self.unknown_text(element)
        return values

    cdef object value(self, dsa_node* element, node):
        if not node.leaf:
            return self.struct(element, node)
        if element_children(element):
            text = itertext(element)
        else:
            text = text_from(element.children)
            if text is None:
                text = b""
        return text.strip(SPACE) if node.strip else text

    cdef int append(self, dict values, str name, object value, dsa_node* element,
                    dsa_node* child) except -1:
        listed = values.get(name)
        if listed is None:
            values[name] = [value]
        elif type(listed) is AttributeList:
            self.repeated(element, child, name)
        else:
            listed.append(value)
        return 0

    cdef int repeated(self, dsa_node* element, dsa_node* child, str name) except -1:
        self.converter._repeated(self.proxy(element), self.proxy(child), name)
        return 0

    cdef int unknown_text(self, dsa_node* element) except -1:
        proxy = self.proxy(element)
        self.converter._unknown(proxy, "text", proxy.sourceline)
        return 0


def view(element):
    """What the walker reads of `element`: (tag, text, child tags, attribute items), decoded,
    for `xml.py` to compare with lxml's own answers before it trusts the declared layout."""
    cdef dsa_node* node = node_of(element)
    cdef dsa_node* child = node.children
    cdef dsa_attr* attribute = node.properties
    tags = []
    while child is not NULL:
        if child.type == ELEMENT_NODE:
            tags.append(name_of(child.name, child.ns))
        child = child.next
    items = []
    while attribute is not NULL:
        value = attribute_value(attribute)
        items.append((name_of(attribute.name, attribute.ns), value.decode()))
        attribute = attribute.next
    text = text_from(node.children)
    return name_of(node.name, node.ns), None if text is None else text.decode(), tags, items
