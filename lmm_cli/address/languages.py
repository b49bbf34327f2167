"""Which tree-sitter grammar reads a file, and the queries that find its definitions and identifiers.

tree-sitter is imported lazily (in ``grammar``): importing this module costs nothing."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["language_of", "detect", "grammar"]


_EXT_LANG: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".jsx": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp", ".hh": "cpp", ".hpp": "cpp",
    ".hxx": "cpp", ".h++": "cpp", ".ipp": "cpp", ".tpp": "cpp", ".inl": "cpp",
    ".cs": "csharp",
    ".rb": "ruby", ".rake": "ruby", ".gemspec": "ruby",
    ".php": "php",
    ".kt": "kotlin", ".kts": "kotlin",
}
_NAME_LANG: dict[str, str] = {"rakefile": "ruby", "gemfile": "ruby"}

# C++ in a .h file: parse it with the C++ grammar, which reads plain C just as well.
_CPP_MARKERS = re.compile(rb"^\s*(?:class|namespace|template)\b|::|\bpublic:|\bprivate:", re.M)

# Definition queries. The capture that is not @name (or @recv) names the kind; "impl" marks a
# container that is not itself a symbol (its methods get its type as parent).
_DEF_QUERIES: dict[str, list[str]] = {
    "python": [
        "(function_definition name: (identifier) @name) @function",
        "(class_definition name: (identifier) @name) @class",
    ],
    "javascript": [
        "(function_declaration name: (identifier) @name) @function",
        "(generator_function_declaration name: (identifier) @name) @function",
        "(class_declaration name: (_) @name) @class",
        "(method_definition name: (_) @name) @function",
        "(variable_declarator name: (identifier) @name"
        " value: [(arrow_function) (function_expression) (generator_function)]) @function",
    ],
    "go": [
        "(function_declaration name: (identifier) @name) @function",
        "(method_declaration receiver: (parameter_list (parameter_declaration type: (_) @recv))"
        " name: (field_identifier) @name) @method",
        "(method_declaration name: (field_identifier) @name) @method",
        "(type_spec name: (type_identifier) @name type: (struct_type)) @struct",
        "(type_spec name: (type_identifier) @name type: (interface_type)) @interface",
        "(type_spec name: (type_identifier) @name) @type",
        "(type_alias name: (type_identifier) @name) @type",
    ],
    "rust": [
        "(function_item name: (identifier) @name) @function",
        "(function_signature_item name: (identifier) @name) @function",
        "(struct_item name: (type_identifier) @name) @struct",
        "(enum_item name: (type_identifier) @name) @enum",
        "(union_item name: (type_identifier) @name) @union",
        "(trait_item name: (type_identifier) @name) @trait",
        "(type_item name: (type_identifier) @name) @type",
        "(mod_item name: (identifier) @name body: (_)) @module",
        "(macro_definition name: (identifier) @name) @macro",
        "(impl_item type: (_) @name) @impl",
    ],
    "java": [
        "(class_declaration name: (identifier) @name) @class",
        "(interface_declaration name: (identifier) @name) @interface",
        "(enum_declaration name: (identifier) @name) @enum",
        "(record_declaration name: (identifier) @name) @record",
        "(annotation_type_declaration name: (identifier) @name) @interface",
        "(method_declaration name: (identifier) @name) @function",
        "(constructor_declaration name: (identifier) @name) @constructor",
    ],
    "c": [
        "(function_definition declarator: (_) @name) @function",
        "(struct_specifier name: (_) @name body: (_)) @struct",
        "(union_specifier name: (_) @name body: (_)) @union",
        "(enum_specifier name: (_) @name body: (_)) @enum",
        "(type_definition type: (struct_specifier !name body: (_)) declarator: (type_identifier) @name) @struct",
        "(type_definition type: (union_specifier !name body: (_)) declarator: (type_identifier) @name) @union",
        "(type_definition type: (enum_specifier !name body: (_)) declarator: (type_identifier) @name) @enum",
    ],
    "csharp": [
        "(class_declaration name: (_) @name) @class",
        "(interface_declaration name: (_) @name) @interface",
        "(struct_declaration name: (_) @name) @struct",
        "(enum_declaration name: (_) @name) @enum",
        "(record_declaration name: (_) @name) @record",
        "(record_struct_declaration name: (_) @name) @record",
        "(method_declaration name: (_) @name) @function",
        "(constructor_declaration name: (_) @name) @constructor",
        "(namespace_declaration name: (_) @name) @namespace",
        "(file_scoped_namespace_declaration name: (_) @name) @namespace",
    ],
    "ruby": [
        "(method name: (_) @name) @function",
        "(singleton_method name: (_) @name) @function",
        "(class name: (_) @name) @class",
        "(module name: (_) @name) @module",
    ],
    "php": [
        "(class_declaration name: (_) @name) @class",
        "(interface_declaration name: (_) @name) @interface",
        "(trait_declaration name: (_) @name) @trait",
        "(enum_declaration name: (_) @name) @enum",
        "(method_declaration name: (_) @name) @function",
        "(function_definition name: (_) @name) @function",
        "(namespace_definition name: (_) @name body: (_)) @namespace",
    ],
    "kotlin": [
        "(class_declaration (type_identifier) @name) @class",
        "(object_declaration (type_identifier) @name) @object",
        "(function_declaration (simple_identifier) @name) @function",
    ],
}
_DEF_QUERIES["typescript"] = _DEF_QUERIES["javascript"] + [
    "(abstract_class_declaration name: (_) @name) @class",
    "(interface_declaration name: (_) @name) @interface",
    "(type_alias_declaration name: (_) @name) @type",
    "(enum_declaration name: (_) @name) @enum",
    "(internal_module name: (_) @name) @namespace",
]
_DEF_QUERIES["tsx"] = _DEF_QUERIES["typescript"]
_DEF_QUERIES["cpp"] = _DEF_QUERIES["c"] + [
    "(class_specifier name: (_) @name body: (_)) @class",
    "(namespace_definition name: (_) @name) @namespace",
    "(type_definition type: (class_specifier !name body: (_)) declarator: (type_identifier) @name) @class",
]

# Identifier-like node kinds (those a grammar lacks are dropped when its query is built).
_IDENT_KINDS = (
    "identifier", "type_identifier", "field_identifier", "property_identifier",
    "shorthand_property_identifier", "shorthand_property_identifier_pattern",
    "private_property_identifier", "namespace_identifier", "package_identifier",
    "constant", "simple_identifier", "name",
)
def language_of(path: str) -> str | None:
    """The tree-sitter language used for ``path``, or None when it is chunked by lines.

    ``.h`` says ``c``; :func:`extract` switches to ``cpp`` when the header's content is C++."""
    base = path.rsplit("/", 1)[-1].lower()
    dot = base.rfind(".")
    if dot > 0:
        lang = _EXT_LANG.get(base[dot:])
        if lang:
            return lang
    return _NAME_LANG.get(base)


def detect(path: str, source: bytes) -> str | None:
    lang = language_of(path)
    if lang == "c" and path.lower().endswith(".h") and _CPP_MARKERS.search(source):
        return "cpp"
    return lang


_TS_CACHE: dict[str, Any] = {}


def grammar(lang: str) -> tuple[Any, Any, Any] | None:
    """(parser, definitions query, identifiers query) for ``lang``, built once; None if unavailable."""
    if lang in _TS_CACHE:
        return _TS_CACHE[lang]
    try:
        from tree_sitter import Query
        from tree_sitter_language_pack import get_language, get_parser

        language = get_language(lang)  # type: ignore[arg-type]
        parser = get_parser(lang)  # type: ignore[arg-type]
        good = []
        for pattern in _DEF_QUERIES.get(lang, []):
            try:
                Query(language, pattern)
            except Exception:  # noqa: BLE001 - a node kind this grammar version lacks
                continue
            good.append(pattern)
        defs = Query(language, "\n".join(good)) if good else None
        kinds = [k for k in _IDENT_KINDS if language.id_for_node_kind(k, True)]
        idents = Query(language, "[" + " ".join(f"({k})" for k in kinds) + "] @id") if kinds else None
        result: tuple[Any, Any, Any] | None = (parser, defs, idents)
    except Exception:  # noqa: BLE001 - no grammar: the file is chunked by lines
        result = None
    _TS_CACHE[lang] = result
    return result
