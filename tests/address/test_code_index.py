"""The code structure index: tree-sitter symbols, chunks, the reference graph, incremental runs."""

from __future__ import annotations

import hashlib
import sqlite3
import textwrap
from pathlib import Path

import pytest

from lmm_cli.address.code_index import IndexStats, fts_values, index_worktree
from lmm_cli.address.extract import CHUNK_MAX_CHARS, extract
from lmm_cli.address.languages import language_of
from lmm_cli.privacy.ignore import IgnoreRules
from lmm_cli.store.db import connect

from conftest import commit_file, git, lmm, lmm_json, make_repo


def src(text: str) -> bytes:
    return textwrap.dedent(text).lstrip("\n").encode()


def syms(path: str, text: str) -> dict[str, tuple[str, str | None, int, int]]:
    """name (or parent.name for members) → (kind, parent, start, end)."""
    symbols, _chunks, _ids = extract(path, src(text))
    out = {}
    for s in symbols:
        key = f"{s.parent}.{s.name}" if s.parent else s.name
        assert key not in out, f"duplicate symbol {key}"
        out[key] = (s.kind, s.parent, s.start_line, s.end_line)
    return out


def sig(path: str, text: str, name: str) -> str:
    symbols, _c, _i = extract(path, src(text))
    return next(s.signature for s in symbols if s.name == name)


@pytest.fixture
def store(tmp_path: Path) -> sqlite3.Connection:
    d = tmp_path / "store"
    d.mkdir()
    db = connect(d, create=True)
    yield db
    db.close()


def fts(db: sqlite3.Connection, query: str) -> set[str]:
    rows = db.execute(
        "SELECT c.path FROM code_fts JOIN code_chunks c ON c.id = code_fts.rowid WHERE code_fts MATCH ?",
        (query,),
    )
    return {r[0] for r in rows}


def fts_rowids(db: sqlite3.Connection, query: str) -> set[int]:
    return {r[0] for r in db.execute("SELECT rowid FROM code_fts WHERE code_fts MATCH ?", (query,))}


# --------------------------------------------------------------------------------------------
# Languages and symbols
# --------------------------------------------------------------------------------------------


def test_language_of() -> None:
    assert language_of("a/b.py") == "python"
    assert language_of("x.tsx") == "tsx"
    assert language_of("x.ts") == "typescript"
    assert language_of("x.mjs") == "javascript"
    assert language_of("main.go") == "go"
    assert language_of("lib.rs") == "rust"
    assert language_of("A.java") == "java"
    assert language_of("a.c") == "c"
    assert language_of("a.hpp") == "cpp"
    assert language_of("A.CPP") == "cpp"
    assert language_of("README.md") is None
    assert language_of("Makefile") is None
    assert language_of(".py") is None


def test_python_symbols() -> None:
    code = """
    import os

    @decorator
    def top(a, b=1,
            c=2) -> int:
        return helper(a)

    class Store(Base):
        \"\"\"Doc.\"\"\"
        size = 1

        def get(self, key):
            def inner():
                pass
            return inner()

        async def close(self): ...
    """
    s = syms("m.py", code)
    assert s["top"] == ("function", None, 4, 6)  # cited at its `def` line; the decorator is in its chunk
    assert s["Store"] == ("class", None, 8, 17)
    assert s["Store.get"] == ("method", "Store", 12, 15)
    assert s["get.inner"] == ("function", "get", 13, 14)
    assert s["Store.close"] == ("method", "Store", 17, 17)
    assert sig("m.py", code, "top") == "def top(a, b=1, c=2) -> int:"
    assert sig("m.py", code, "Store") == "class Store(Base):"


def test_javascript_symbols() -> None:
    code = """
    const x = require("x");
    export async function load(url) {
      return fetch(url);
    }
    class Cache {
      constructor() { this.m = new Map(); }
      get(key) {
        return this.m.get(key);
      }
    }
    export const double = (n) => n * 2;
    let handler = function () {};
    function outer() { const local = () => 1; return local(); }
    """
    s = syms("a.js", code)
    assert s["load"] == ("function", None, 2, 4)
    assert s["Cache"] == ("class", None, 5, 10)
    assert s["Cache.constructor"] == ("method", "Cache", 6, 6)
    assert s["Cache.get"] == ("method", "Cache", 7, 9)
    assert s["double"] == ("function", None, 11, 11)
    assert s["handler"] == ("function", None, 12, 12)
    assert s["outer"] == ("function", None, 13, 13)
    assert "outer.local" not in s  # arrow functions in a body are locals, not symbols
    assert sig("a.js", code, "load") == "export async function load(url)"


@pytest.mark.parametrize("path", ["a.ts", "a.tsx"])
def test_typescript_symbols(path: str) -> None:
    code = """
    export interface Props {
      name: string;
    }
    export type Id = string | number;
    enum Color { Red, Green }
    export default class Widget {
      render(): string {
        return "x";
      }
    }
    export const useThing = (x: number): number => x + 1;
    abstract class Shape { abstract area(): number; }
    namespace Util { export function pad() {} }
    """
    s = syms(path, code)
    assert s["Props"] == ("interface", None, 1, 3)
    assert s["Id"] == ("type", None, 4, 4)
    assert s["Color"] == ("enum", None, 5, 5)
    assert s["Widget"] == ("class", None, 6, 10)
    assert s["Widget.render"] == ("method", "Widget", 7, 9)
    assert s["useThing"] == ("function", None, 11, 11)
    assert s["Shape"] == ("class", None, 12, 12)
    assert s["Util"] == ("namespace", None, 13, 13)
    assert s["Util.pad"] == ("function", "Util", 13, 13)
    assert sig(path, code, "Widget") == "export default class Widget"


def test_tsx_component() -> None:
    code = """
    export function App({ title }: Props) {
      return <div className="app">{title}</div>;
    }
    """
    assert syms("App.tsx", code)["App"] == ("function", None, 1, 3)


def test_go_symbols() -> None:
    code = """
    package server

    // Server serves requests.
    type Server struct {
    	addr string
    }

    type Handler interface {
    	Serve() error
    }

    type (
    	ID   int
    	Name string
    )

    func (s *Server) Start(port int) error {
    	return listen(s.addr, port)
    }

    func (s Server) Stop() {}

    func New(addr string) *Server {
    	return &Server{addr: addr}
    }
    """
    s = syms("server.go", code)
    assert s["Server"] == ("struct", None, 4, 6)
    assert s["Handler"] == ("interface", None, 8, 10)
    assert s["ID"] == ("type", None, 13, 13)
    assert s["Name"] == ("type", None, 14, 14)
    assert s["Server.Start"] == ("method", "Server", 17, 19)
    assert s["Server.Stop"] == ("method", "Server", 21, 21)
    assert s["New"] == ("function", None, 23, 25)
    assert sig("server.go", code, "Start") == "func (s *Server) Start(port int) error"
    assert sig("server.go", code, "ID") == "type ID int"
    _s, chunks, _i = extract("server.go", src(code))
    server = next(c for c in chunks if c.symbol == "Server")
    assert server.start_line == 3 and server.text.startswith("// Server serves requests.")


def test_rust_symbols() -> None:
    code = """
    use std::fmt;

    /// A point.
    #[derive(Debug)]
    pub struct Point<T> {
        x: T,
    }

    pub enum Shape { Circle, Square }

    pub trait Area {
        fn area(&self) -> f64;
    }

    impl<T> Area for Point<T> {
        fn area(&self) -> f64 {
            0.0
        }
    }

    impl crate::geo::Line {
        pub fn new() -> Self { todo!() }
    }

    pub fn distance(a: &Point<f64>, b: &Point<f64>) -> f64 {
        a.x - b.x
    }

    mod tests {
        fn it_works() {}
    }
    mod external;
    """
    s = syms("lib.rs", code)
    assert s["Point"] == ("struct", None, 5, 7)
    assert s["Shape"] == ("enum", None, 9, 9)
    assert s["Area"] == ("trait", None, 11, 13)
    assert s["Area.area"] == ("method", "Area", 12, 12)
    assert s["Point.area"] == ("method", "Point", 16, 18)  # impl methods: parent = the impl's type
    assert s["Line.new"] == ("method", "Line", 22, 22)
    assert s["distance"] == ("function", None, 25, 27)
    assert s["tests"] == ("module", None, 29, 31)
    assert s["tests.it_works"] == ("function", "tests", 30, 30)
    assert "external" not in s  # `mod x;` only declares
    assert [k for k in s if k.startswith("Point")] == ["Point", "Point.area"]  # the impl is no symbol
    assert sig("lib.rs", code, "distance") == "pub fn distance(a: &Point<f64>, b: &Point<f64>) -> f64"
    _s, chunks, _i = extract("lib.rs", src(code))
    point = next(c for c in chunks if c.symbol == "Point" and "struct" in c.text)
    assert point.start_line == 3  # doc comment and attribute travel with the struct


def test_java_symbols() -> None:
    code = """
    package com.acme;

    @Service
    public class OrderService extends Base implements Api {
        private final Repo repo;

        public OrderService(Repo repo) {
            this.repo = repo;
        }

        @Override
        public Order find(long id) {
            return repo.load(id);
        }

        interface Listener { void changed(); }
        enum State { OPEN, CLOSED }
        record Line(int qty, long price) {}
    }
    """
    s = syms("OrderService.java", code)
    assert s["OrderService"] == ("class", None, 4, 19)  # the class line, not @Service
    assert s["OrderService.OrderService"] == ("constructor", "OrderService", 7, 9)
    assert s["OrderService.find"] == ("method", "OrderService", 12, 14)  # not @Override
    assert s["OrderService.Listener"] == ("interface", "OrderService", 16, 16)
    assert s["Listener.changed"] == ("method", "Listener", 16, 16)
    assert s["OrderService.State"] == ("enum", "OrderService", 17, 17)
    assert s["OrderService.Line"] == ("record", "OrderService", 18, 18)
    assert sig("OrderService.java", code, "find") == "@Override public Order find(long id)"


def test_c_symbols() -> None:
    code = """
    #include <stdio.h>

    struct point {
        int x, y;
    };

    typedef struct {
        int w, h;
    } size_t2;

    enum color { RED, GREEN };

    static char *dup(const char *s) {
        return 0;
    }

    int main(int argc, char **argv) {
        printf("%s", dup(argv[0]));
        return 0;
    }
    """
    s = syms("main.c", code)
    assert s["point"] == ("struct", None, 3, 5)
    assert s["size_t2"] == ("struct", None, 7, 9)
    assert s["color"] == ("enum", None, 11, 11)
    assert s["dup"] == ("function", None, 13, 15)
    assert s["main"] == ("function", None, 17, 20)
    assert sig("main.c", code, "dup") == "static char *dup(const char *s)"


def test_cpp_symbols() -> None:
    code = """
    namespace gfx {
    class Widget : public Base {
     public:
      int size() const { return n_; }
      void draw();
     private:
      int n_;
    };
    }

    void gfx::Widget::draw() { paint(); }

    template <typename T>
    T max_of(T a, T b) { return a > b ? a : b; }

    Widget::~Widget() {}

    struct Fwd;
    """
    s = syms("w.cpp", code)
    assert s["gfx"] == ("namespace", None, 1, 9)
    assert s["gfx.Widget"] == ("class", "gfx", 2, 8)
    assert s["Widget.size"] == ("method", "Widget", 4, 4)
    assert s["Widget.draw"] == ("method", "Widget", 11, 11)  # out-of-class definition
    assert s["max_of"] == ("function", None, 14, 14)  # its name's line; template<> is in its chunk
    assert s["Widget.~Widget"] == ("method", "Widget", 16, 16)
    assert "Fwd" not in s  # a declaration without a body
    assert sig("w.cpp", code, "max_of") == "template <typename T> T max_of(T a, T b)"
    # A header that is C++ is parsed as C++.
    header = "namespace n {\nclass K {\n  void f() {}\n};\n}\n"
    assert syms("k.h", header)["K.f"] == ("method", "K", 3, 3)


@pytest.mark.parametrize(
    "path, code, expected",
    [
        (
            "a.cs",
            "namespace App {\n  public class C {\n    public C() {}\n    public int M(int x) { return x; }\n  }\n}\n",
            {"App": ("namespace", None, 1, 6), "App.C": ("class", "App", 2, 5),
             "C.C": ("constructor", "C", 3, 3), "C.M": ("method", "C", 4, 4)},
        ),
        (
            "a.rb",
            "module Billing\n  class Invoice < Base\n    def total\n      1\n    end\n  end\nend\n",
            {"Billing": ("module", None, 1, 7), "Billing.Invoice": ("class", "Billing", 2, 6),
             "Invoice.total": ("method", "Invoice", 3, 5)},
        ),
        (
            "a.php",
            "<?php\nclass Cart {\n  public function add($x) { return $x; }\n}\nfunction helper() {}\n",
            {"Cart": ("class", None, 2, 4), "Cart.add": ("method", "Cart", 3, 3),
             "helper": ("function", None, 5, 5)},
        ),
        (
            "a.kt",
            "class Repo(val x: Int) {\n  fun load(): Int = x\n}\ninterface Api\nfun main() {}\n",
            {"Repo": ("class", None, 1, 3), "Repo.load": ("method", "Repo", 2, 2),
             "Api": ("interface", None, 4, 4), "main": ("function", None, 5, 5)},
        ),
    ],
)
def test_bonus_languages(path: str, code: str, expected: dict) -> None:
    assert syms(path, code) == expected


def test_syntax_errors_recover_and_never_raise() -> None:
    code = """
    def good(a):
        return a

    def broken(:
        pass

    class Fine:
        def ok(self):
            return 1
    """
    s = syms("bad.py", code)
    assert s["good"] == ("function", None, 1, 2)
    assert s["Fine.ok"][0] == "method"
    # Garbage in any language: never raises, still chunked.
    for path in ("x.py", "x.go", "x.rs", "x.java", "x.c", "x.cpp", "x.ts", "x.tsx", "x.js", "x.rb"):
        for data in (b"}}}{{{ ((( fn def class <<<>>>", b"\xff\xfe\x00garbage\n" * 3, b"", b"\n\n\n"):
            symbols, chunks, idents = extract(path, data)
            assert isinstance(symbols, list) and isinstance(chunks, list)


# Per language: decorators, annotations, attributes and doc comments above definitions. Each line
# that defines something ends with a `<-` comment naming it; a symbol's start_line must be that line
# (the line a brief cites as `name (Lnn)`), while its chunk still starts at the doc comment above.
DEFINITION_LINES = {
    "m.py": """
        # A comment.
        @app.route("/x")
        @login_required
        def view(request):  # <- view
            return 1

        @dataclass(frozen=True)
        class Point:  # <- Point
            x: int

            @property
            def norm(self):  # <- norm
                return self.x
        """,
    "m.js": """
        /**
         * Loads a thing.
         * @param {string} url
         */
        export async function load(url) { // <- load
          return url;
        }

        /** A cache. */
        @sealed
        class Cache { // <- Cache
          /** Reads. */
          @memo
          get(key) { // <- get
            return key;
          }
        }
        """,
    "m.ts": """
        /** The widget. */
        @Component({ selector: "w" })
        export class Widget { // <- Widget
          @Input() name: string;

          /** Clicked. */
          @HostListener("click")
          onClick(): void {} // <- onClick
        }

        /** Double it. */
        export const double = (n: number): number => n * 2; // <- double
        """,
    "m.tsx": """
        /** The app. */
        @observer
        export class App { // <- App
          /** Draws. */
          @action
          render() { // <- render
            return <div />;
          }
        }
        """,
    "m.go": """
        package m

        // Server serves.
        //
        // It has a long doc comment.
        type Server struct { // <- Server
        	addr string
        }

        // Start starts it.
        //go:noinline
        func (s *Server) Start() error { // <- Start
        	return nil
        }
        """,
    "m.rs": """
        /// A point.
        #[derive(Debug, Clone)]
        pub struct Point { // <- Point
            x: i32,
        }

        impl Point {
            /// Makes one.
            #[inline]
            #[must_use]
            pub fn new() -> Self { // <- new
                Point { x: 0 }
            }
        }

        #[cfg(test)]
        mod tests { // <- tests
            #[test]
            #[should_panic]
            fn it_panics() { // <- it_panics
                panic!();
            }
        }
        """,
    "M.java": """
        /**
         * The service.
         */
        @Service
        @Transactional(readOnly = true)
        public class OrderService { // <- OrderService
            /** Finds. */
            @Override
            @Deprecated
            public Order find(long id) { // <- find
                return null;
            }

            @Test
            void works() {} // <- works
        }
        """,
    "m.c": """
        /**
         * Dies.
         */
        __attribute__((noreturn))
        static void
        die(const char *msg) /* <- die */
        {
        }

        /* A point. */
        struct point { /* <- point */
            int x;
        };
        """,
    "m.cpp": """
        /// The maximum.
        template <typename T>
        [[nodiscard]] T max_of(T a, T b) { return a > b ? a : b; } // <- max_of

        /** A widget. */
        class Widget { // <- Widget
         public:
          /// Its size.
          [[nodiscard]] int size() const { return 1; } // <- size
        };
        """,
    "m.cs": """
        /// <summary>Tests.</summary>
        [TestFixture]
        [Category("fast")]
        public class Tests { // <- Tests
            /// <summary>One.</summary>
            [Test]
            [TestCase(1)]
            public void One(int x) {} // <- One
        }
        """,
    "m.rb": """
        # Billing.
        # More about it.
        class Invoice # <- Invoice
          # The total.
          # @return [Integer]
          def total # <- total
            1
          end
        end
        """,
    "m.php": """
        <?php
        /**
         * A cart.
         */
        #[Entity]
        class Cart { // <- Cart
            /** Adds. */
            #[Route('/add')]
            #[Pure]
            public function add($x) { return $x; } // <- add
        }
        """,
    "m.kt": """
        /** A repo. */
        @Suppress("unused")
        @Serializable
        class Repo { // <- Repo
            /** Loads. */
            @Test
            @Throws(Exception::class)
            fun load(): Int = 1 // <- load
        }
        """,
}


@pytest.mark.parametrize("path", sorted(DEFINITION_LINES))
def test_symbol_start_line_is_the_definition_line(path: str) -> None:
    """Not the decorator, annotation, attribute, template<…> or doc comment line above it."""
    text = DEFINITION_LINES[path]
    lines = textwrap.dedent(text).lstrip("\n").splitlines()
    want = {}
    for no, line in enumerate(lines, 1):
        if "<- " in line:
            want[line.rsplit("<- ", 1)[1].split()[0]] = no
    symbols, chunks, _ids = extract(path, src(text))
    got = {s.name: s.start_line for s in symbols if s.name in want}
    assert got == want, "\n".join(f"{n}: L{ln} {lines[ln - 1].strip()!r}" for n, ln in got.items())
    # The chunk still takes the doc comment and decorators along: it starts above the definition.
    first = min(want, key=want.__getitem__)
    chunk = next(c for c in chunks if c.symbol == first)
    assert chunk.start_line < want[first] and chunk.text.startswith(("/", "#")), chunk


def test_identifiers_exclude_own_definitions() -> None:
    code = """
    from billing import compute_total

    def report(order):
        total = compute_total(order.lines)
        return format_money(total)

    def format_money(x):
        return str(x)
    """
    _s, _c, idents = extract("r.py", src(code))
    assert idents["compute_total"] == 2
    assert "report" not in idents and "format_money" not in idents  # defined here
    assert "self" not in idents


# --------------------------------------------------------------------------------------------
# Chunks
# --------------------------------------------------------------------------------------------


def covered_lines(chunks) -> set[int]:
    return {n for c in chunks for n in range(c.start_line, c.end_line + 1)}


def test_chunks_cover_the_code() -> None:
    code = """
    import os
    LIMIT = 10

    def a():
        return 1

    X = [
        1,
    ]

    class B:
        def m(self):
            return os.sep
    """
    data = src(code)
    symbols, chunks, _ = extract("c.py", data)
    lines = data.decode().splitlines()
    wanted = {i for i, ln in enumerate(lines, 1) if ln.strip()}
    assert wanted <= covered_lines(chunks)
    by_symbol = {c.symbol: c for c in chunks}
    assert by_symbol["a"].text == "def a():\n    return 1"
    assert (by_symbol["B"].start_line, by_symbol["B"].end_line) == (11, 13)
    assert [c.text for c in chunks if c.symbol is None] == ["import os\nLIMIT = 10", "X = [\n    1,\n]"]
    for c in chunks:
        assert c.hash == hashlib.sha1(c.text.encode()).hexdigest()
        assert c.text == "\n".join(lines[c.start_line - 1 : c.end_line])


def test_big_class_is_split_into_methods() -> None:
    body = "".join(
        f"    def m{i}(self):\n" + "".join(f"        v{j} = {j}\n" for j in range(8)) + "\n" for i in range(10)
    )
    code = "class Big(Base):\n    '''Doc.'''\n    size = 3\n\n" + body + "    tail = 1\n"
    symbols, chunks, _ = extract("big.py", code.encode())
    big = next(s for s in symbols if s.name == "Big")
    assert big.end_line - big.start_line + 1 > 80
    names = [c.symbol for c in chunks]
    assert names.count("Big") == 2  # the header (class line, docstring, fields) and the tail
    header = chunks[0]
    assert header.symbol == "Big" and header.text == "class Big(Base):\n    '''Doc.'''\n    size = 3"
    assert [n for n in names if n != "Big"] == [f"m{i}" for i in range(10)]
    lines = code.splitlines()
    assert {i for i, ln in enumerate(lines, 1) if ln.strip()} <= covered_lines(chunks)


def test_small_class_is_one_chunk() -> None:
    code = "class S:\n" + "".join(f"    def m{i}(self):\n        return {i}\n" for i in range(5))
    _s, chunks, _ = extract("s.py", code.encode())
    assert [(c.symbol, c.start_line, c.end_line) for c in chunks] == [("S", 1, 11)]


def test_long_top_level_code_and_cap() -> None:
    code = "".join(f"X{i} = {i}\n" for i in range(150))
    _s, chunks, _ = extract("consts.py", code.encode())
    assert all(c.end_line - c.start_line + 1 <= 60 for c in chunks)
    assert covered_lines(chunks) == set(range(1, 151))
    long_fn = "def f():\n" + "".join(f"    x = '{'y' * 100}'  # {i}\n" for i in range(200))
    _s, chunks, _ = extract("long.py", long_fn.encode())
    assert len(chunks) > 1 and all(len(c.text) <= CHUNK_MAX_CHARS for c in chunks)
    assert {c.symbol for c in chunks} == {"f"}
    assert covered_lines(chunks) == set(range(1, 202))
    minified = ("var a=1;" * 2000).encode()
    _s, chunks, _ = extract("app.min.js", minified)
    assert chunks and all(len(c.text) <= CHUNK_MAX_CHARS for c in chunks)


def test_other_files_are_chunked_by_line_windows() -> None:
    text = "".join(f"line {i}\n" for i in range(1, 131))
    symbols, chunks, idents = extract("notes.md", text.encode())
    assert symbols == [] and not idents
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 60), (51, 110), (101, 130)]
    assert chunks[0].symbol is None
    # Empty windows are skipped.
    sparse = "a\n" + "\n" * 200 + "b\n"
    _s, chunks, _ = extract("sparse.txt", sparse.encode())
    assert [c.text for c in chunks] == ["a", "b"]


def test_markdown_is_chunked_by_section_with_the_heading_as_symbol() -> None:
    doc = textwrap.dedent("""\
        Intro before any heading.

        Storage guide
        =============

        How the buckets are laid out.

        ```sh
        # not a heading: inside a fence
        lmm init
        ```

        ## Queue limits ##
        At most 100 jobs per tenant.

        Retention
        ---------
        Thirty days.
        """)
    symbols, chunks, idents = extract("docs/storage.md", doc.encode())
    assert symbols == [] and not idents
    assert [(c.start_line, c.end_line, c.symbol) for c in chunks] == [
        (1, 1, None), (3, 11, "Storage guide"), (13, 14, "Queue limits"), (16, 18, "Retention")]
    assert "# not a heading" in chunks[1].text


def test_a_section_heading_finds_its_document(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=2)
    commit_file(repo, "docs/adr/0004-flush-strategy.md",
                "# 4. Flush strategy\n\n## Queue limits\n\nEach tenant may hold a bounded number of jobs.\n",
                "Record the flush decision")
    commit_file(repo, "src/queue.py", "def push(queue, job):\n    queue.append(job)\n\ndef pop(queue):\n"
                "    return queue.pop()\n\ndef size(queue):\n    return len(queue)\n", "Add a queue")
    lmm("init", "--repo", str(repo), "--no-hooks", "--no-embed")
    out = lmm_json("recall", "--repo", str(repo), "--fast", "queue limits")
    top = out["files"][0]  # type: ignore[index]
    assert top["path"] == "docs/adr/0004-flush-strategy.md"
    assert {"name": "Queue limits", "line": 3} in top["symbols"]


def test_secrets_redacted_in_chunks_and_signatures() -> None:
    code = """
    def connect(host, password="hunter2-Blue"):
        token = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
        return host

    KEY = \"\"\"-----BEGIN RSA PRIVATE KEY-----
    MIIEowIBAAKCAQEA7x9Yk3bQ1vZr8mN2pL5tQwErTyUiOpAsDfGhJkLzXcVbNm12
    MIIEowIBAAKCAQEA7x9Yk3bQ1vZr8mN2pL5tQwErTyUiOpAsDfGhJkLzXcVbNm12
    -----END RSA PRIVATE KEY-----\"\"\"

    def after():
        return KEY
    """
    symbols, chunks, _ = extract("db.py", src(code))
    text = "\n".join(c.text for c in chunks)
    assert "ghp_abcdef" not in text and "[REDACTED:github-token]" in text
    assert "hunter2-Blue" not in text
    assert "MIIEowIBAAKCAQEA" not in text and "[REDACTED:private-key]" in text
    assert "hunter2-Blue" not in symbols[0].signature
    # A multi-line secret does not shift line numbers.
    after = next(c for c in chunks if c.symbol == "after")
    assert (after.start_line, after.end_line) == (10, 11)
    assert after.text == "def after():\n    return KEY"


# --------------------------------------------------------------------------------------------
# The working tree
# --------------------------------------------------------------------------------------------


def table(db: sqlite3.Connection, sql: str, *args) -> list[tuple]:
    return [tuple(r) for r in db.execute(sql, args)]


def paths(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT path FROM code_files")}


def assert_consistent(db: sqlite3.Connection) -> None:
    """Every table holds only indexed files, and the FTS index has exactly one entry per chunk."""
    files = paths(db)
    for t in ("code_symbols", "code_chunks", "code_idents"):
        assert {r[0] for r in db.execute(f"SELECT DISTINCT path FROM {t}")} <= files, t
    for src_, dst in db.execute("SELECT src, dst FROM code_refs"):
        assert src_ in files and dst in files
    chunk_ids = {r[0] for r in db.execute("SELECT id FROM code_chunks")}
    assert {r[0] for r in db.execute("SELECT rowid FROM code_fts")} == chunk_ids
    db.execute("INSERT INTO code_fts (code_fts, rank) VALUES ('integrity-check', 1)")


def test_index_a_repository(tmp_path: Path, store: sqlite3.Connection) -> None:
    repo = make_repo(tmp_path / "repo", commits=0)
    commit_file(repo, "billing/total.py", "def compute_total(lines):\n    return sum(lines)\n", "total")
    commit_file(
        repo,
        "web/report.py",
        "from billing.total import compute_total\n\ndef report(o):\n    return compute_total(o.lines)\n",
        "report",
    )
    commit_file(repo, "svc/main.go", "package main\n\nfunc main() {\n\tprintln(1)\n}\n", "go")
    commit_file(repo, "README.md", "# Project\n\nHow to compute totals.\n", "readme")
    calls: list[tuple[int, int]] = []
    stats = index_worktree(store, repo, progress=lambda d, t: calls.append((d, t)))
    assert isinstance(stats, IndexStats)
    assert (stats.files, stats.parsed, stats.removed) == (4, 4, 0)
    assert stats.symbols == 3 and stats.chunks >= 4
    assert calls and calls[-1] == (4, 4)
    assert paths(store) == {"billing/total.py", "web/report.py", "svc/main.go", "README.md"}
    assert table(store, "SELECT lang FROM code_files WHERE path = 'README.md'") == [(None,)]
    assert table(store, "SELECT lang, lines FROM code_files WHERE path = 'svc/main.go'") == [("go", 5)]
    blob = git(repo, "rev-parse", "HEAD:svc/main.go").strip()
    assert table(store, "SELECT hash FROM code_files WHERE path = 'svc/main.go'") == [(blob,)]
    assert table(
        store, "SELECT name, kind, parent, start_line, end_line, signature FROM code_symbols WHERE path = ?",
        "billing/total.py",
    ) == [("compute_total", "function", None, 1, 2, "def compute_total(lines):")]
    # The reference graph: report.py uses compute_total, which total.py defines.
    assert table(store, "SELECT src, dst, weight FROM code_refs") == [("web/report.py", "billing/total.py", 2.0)]
    # Lexical search, including code-aware terms (compute_total → compute, total).
    assert fts(store, "compute AND total") == {"billing/total.py", "web/report.py", "README.md"}
    assert fts(store, "terms:compute AND terms:total") == {"billing/total.py", "web/report.py"}
    assert fts(store, "println") == {"svc/main.go"}
    assert_consistent(store)


def test_incremental_runs(tmp_path: Path, store: sqlite3.Connection) -> None:
    repo = make_repo(tmp_path / "repo", commits=3)  # src/mod0.py … src/mod2.py
    commit_file(repo, "src/util.py", "def frobnicate(x):\n    return x\n", "util")
    first = index_worktree(store, repo)
    assert (first.files, first.parsed) == (4, 4)
    ids_before = table(store, "SELECT id, path FROM code_chunks WHERE path != 'src/util.py' ORDER BY id")

    again = index_worktree(store, repo)
    assert (again.files, again.parsed, again.removed) == (4, 0, 0)
    assert again.seconds < 2

    # Edit one file (not committed: the work tree is what counts).
    (repo / "src/util.py").write_text("def defrobnicate(y):\n    return -y\n")
    edited = index_worktree(store, repo)
    assert (edited.files, edited.parsed, edited.removed) == (4, 1, 0)
    assert fts_rowids(store, "frobnicate") == set()  # the old chunk's FTS entry is gone
    assert fts(store, "defrobnicate") == {"src/util.py"}
    assert table(store, "SELECT name FROM code_symbols WHERE path = 'src/util.py'") == [("defrobnicate",)]
    assert table(store, "SELECT id, path FROM code_chunks WHERE path != 'src/util.py' ORDER BY id") == ids_before
    assert_consistent(store)

    # Committing the same content changes nothing (same blob id).
    git(repo, "commit", "-qam", "edit util")
    assert index_worktree(store, repo).parsed == 0

    # Untracked files are indexed; deleting a file drops all its rows.
    (repo / "src/new.py").write_text("def brandnewthing():\n    return f0()\n")
    stats = index_worktree(store, repo)
    assert (stats.files, stats.parsed) == (5, 1)
    assert table(store, "SELECT src, dst FROM code_refs") == [("src/new.py", "src/mod0.py")]
    git(repo, "rm", "-q", "src/mod0.py")
    (repo / "src/new.py").unlink()
    stats = index_worktree(store, repo)
    assert (stats.files, stats.parsed, stats.removed) == (3, 0, 2)
    for t in ("code_files", "code_symbols", "code_chunks", "code_idents"):
        assert table(store, f"SELECT COUNT(*) FROM {t} WHERE path IN ('src/mod0.py', 'src/new.py')") == [(0,)]
    assert table(store, "SELECT COUNT(*) FROM code_refs") == [(0,)]
    assert fts_rowids(store, "brandnewthing") == set()
    assert_consistent(store)


def test_unchanged_files_are_not_read(tmp_path: Path, store: sqlite3.Connection, monkeypatch) -> None:
    repo = make_repo(tmp_path / "repo", commits=3)
    index_worktree(store, repo)
    import lmm_cli.address.code_index as ci

    seen: list[str] = []
    real = ci.safe_extract
    monkeypatch.setattr(ci, "safe_extract", lambda p, d: (seen.append(p), real(p, d))[1])
    (repo / "src/mod1.py").write_text("def f1():\n    return 'changed'\n")
    assert index_worktree(store, repo).parsed == 1
    assert seen == ["src/mod1.py"]


def test_secret_ignored_binary_and_huge_files_are_left_out(tmp_path: Path, store: sqlite3.Connection) -> None:
    repo = make_repo(tmp_path / "repo", commits=1)
    (repo / ".env").write_text("DATABASE_PASSWORD=Sup3rS3cretValue\n")
    (repo / "deploy").mkdir()
    (repo / "deploy/id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n")
    (repo / ".lmmignore").write_text("private/\n*.gen.py\n")
    (repo / "private").mkdir()
    (repo / "private/notes.py").write_text("def hidden_thing():\n    pass\n")
    (repo / "models.gen.py").write_text("def generated_thing():\n    pass\n")
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))
    (repo / "big.py").write_text("x = 1\n" * 200_000)  # 1.2 MB
    (repo / ".gitignore").write_text("build/\n")
    (repo / "build").mkdir()
    (repo / "build/out.py").write_text("def built():\n    pass\n")
    (repo / "config.py").write_text('DB_PASSWORD = "hunter2-Blue"\ndef dsn():\n    return DB_PASSWORD\n')
    stats = index_worktree(store, repo)
    assert paths(store) == {"src/mod0.py", ".lmmignore", ".gitignore", "config.py"}
    assert stats.files == 4
    everything = " ".join(
        str(v) for t in ("code_files", "code_symbols", "code_chunks", "code_idents") for r in
        store.execute(f"SELECT * FROM {t}") for v in tuple(r)
    )
    for absent in (".env", "id_rsa", "Sup3rS3cret", "hidden_thing", "generated_thing", "logo.png", "big.py", "built"):
        assert absent not in everything
    assert "hunter2-Blue" not in everything and "[REDACTED:" in everything
    assert fts_rowids(store, "hunter2") == set()
    # An explicit IgnoreRules replaces .lmmignore.
    stats = index_worktree(store, repo, ignore=IgnoreRules.from_lines(["config.py"]))
    assert "config.py" not in paths(store) and "models.gen.py" in paths(store)
    assert_consistent(store)


def test_file_turning_binary_or_secret_is_dropped(tmp_path: Path, store: sqlite3.Connection) -> None:
    repo = make_repo(tmp_path / "repo", commits=2)
    index_worktree(store, repo)
    (repo / "src/mod0.py").write_bytes(b"\x00\x01binary now")
    (repo / ".lmmignore").write_text("src/mod1.py\n")
    stats = index_worktree(store, repo)
    assert paths(store) == {".lmmignore"}
    assert stats.removed == 2
    assert_consistent(store)


def test_extraction_change_reindexes_everything(tmp_path: Path, store: sqlite3.Connection, monkeypatch) -> None:
    repo = make_repo(tmp_path / "repo", commits=2)
    index_worktree(store, repo)
    import lmm_cli.address.code_index as ci

    monkeypatch.setattr(ci, "INDEX_VERSION", "test-next")
    stats = index_worktree(store, repo)
    assert (stats.files, stats.parsed) == (2, 2)
    assert index_worktree(store, repo).parsed == 0
    assert_consistent(store)


def test_refs_skip_names_defined_everywhere(tmp_path: Path, store: sqlite3.Connection) -> None:
    repo = make_repo(tmp_path / "repo", commits=0)
    for i in range(22):
        (repo / f"p{i}.py").write_text(f"def init():\n    pass\n\ndef only{i}():\n    pass\n")
    (repo / "use.py").write_text("init()\nonly3()\nonly3()\n")
    (repo / "shared_a.py").write_text("def twice():\n    pass\n")
    (repo / "shared_b.py").write_text("def twice():\n    pass\n")
    (repo / "use2.py").write_text("twice()\n")
    index_worktree(store, repo)
    assert table(store, "SELECT dst, weight FROM code_refs WHERE src = 'use.py'") == [("p3.py", 2.0)]
    assert sorted(table(store, "SELECT dst, weight FROM code_refs WHERE src = 'use2.py'")) == [
        ("shared_a.py", 0.5), ("shared_b.py", 0.5)
    ]


def test_fts_values_are_deterministic() -> None:
    a = fts_values("src/a.py", None, "def refreshToken():\n    return parse_http()")
    assert a == fts_values("src/a.py", None, "def refreshToken():\n    return parse_http()")
    assert a[1] == "" and "refresh" in a[3].split() and "http" in a[3].split()


def test_interrupted_run_rebuilds_refs_next_time(tmp_path: Path, store: sqlite3.Connection, monkeypatch) -> None:
    repo = make_repo(tmp_path / "repo", commits=0)
    (repo / "a.py").write_text("def helper_fn():\n    pass\n")
    (repo / "b.py").write_text("helper_fn()\n")
    import lmm_cli.address.code_index as ci

    def boom(db: sqlite3.Connection) -> None:
        raise KeyboardInterrupt

    real = ci.rebuild_refs
    monkeypatch.setattr(ci, "rebuild_refs", boom)
    with pytest.raises(KeyboardInterrupt):
        index_worktree(store, repo)
    assert paths(store) == {"a.py", "b.py"}  # the batch was committed…
    assert table(store, "SELECT COUNT(*) FROM code_refs") == [(0,)]  # …the refs were not
    monkeypatch.setattr(ci, "rebuild_refs", real)
    stats = index_worktree(store, repo)
    assert stats.parsed == 0
    assert table(store, "SELECT src, dst FROM code_refs") == [("b.py", "a.py")]
    assert table(store, "PRAGMA synchronous") == [(2,)]  # the connection's setting is restored
