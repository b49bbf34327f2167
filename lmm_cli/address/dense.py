"""Dense vectors in the store: embed what has none yet, and search by cosine.

The ``vectors`` table (migration m002) keys each vector by (encoder id, sha1 of the text), so text
that did not change is never embedded twice, and a changed model gets vectors of its own instead of
mixing with the old ones. Vectors are stored as little-endian float16 (half the space; cosine
changes by < 1e-3) and are L2-normalised.

numpy is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..store.db import transaction, translate

if TYPE_CHECKING:
    import numpy as np

    from ..embed.encoder import Encoder

__all__ = ["text_hash", "embed_missing", "stored_encoder", "DenseIndex", "BATCH"]

BATCH = 256  # texts encoded, then written in one transaction
_IN = 500  # hashes per `IN (…)` lookup


def text_hash(text: str) -> str:
    """sha1 hex of the UTF-8 text: the key of its vector."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def stored_encoder(db: sqlite3.Connection, name: str | None = None) -> Encoder | None:
    """The encoder whose vectors this store holds, or None when there are none (dense is skipped)."""
    from ..embed.encoder import PACKAGED, load_encoder

    encoder = load_encoder(name or PACKAGED)
    has = db.execute("SELECT 1 FROM vectors WHERE model = ? LIMIT 1", (encoder.id,)).fetchone()
    return encoder if has else None


def _present(db: sqlite3.Connection, model: str, hashes: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(hashes), _IN):
        part = hashes[i:i + _IN]
        rows = db.execute(
            f"SELECT hash FROM vectors WHERE model = ? AND hash IN ({','.join('?' * len(part))})", (model, *part)
        )
        found.update(r[0] for r in rows)
    return found


def embed_missing(
    db: sqlite3.Connection,
    encoder: Encoder,
    items: Iterable[tuple[str, str]],
    *,
    progress: Callable[[int, int], None] | None = None,
    batch: int = BATCH,
) -> int:
    """Embed the (hash, text) pairs that have no vector for ``encoder.id``; returns how many it embedded.

    Each batch is encoded outside any transaction, then written in a short one of its own, so an
    interrupted run keeps what it finished and the store is never locked while the model runs.
    (Called inside the caller's transaction, the rows are written in it and not committed.)
    ``progress(done, total)`` is called after each batch, over the texts that needed embedding.
    """
    import numpy as np

    wanted: dict[str, str] = {}
    for h, text in items:
        wanted.setdefault(h, text)
    if not wanted:
        return 0
    model = encoder.id
    try:
        have = _present(db, model, list(wanted))
    except sqlite3.Error as e:
        raise translate(e, None) from None
    todo = [(h, t) for h, t in wanted.items() if h not in have]
    todo.sort(key=lambda item: len(item[1]))  # batches of like lengths: little padding in the encoder
    total = len(todo)
    done = 0
    for i in range(0, total, batch):
        part = todo[i:i + batch]
        vecs = np.asarray(encoder.encode([t for _, t in part]), dtype=np.float32)
        if vecs.shape != (len(part), encoder.dim):
            raise ValueError(f"encoder {model} returned shape {vecs.shape}, expected ({len(part)}, {encoder.dim})")
        blobs = vecs.astype("<f2")
        rows = [(model, h, encoder.dim, blobs[j].tobytes()) for j, (h, _) in enumerate(part)]
        try:
            with transaction(db):  # joins the caller's transaction if it holds one
                db.executemany("INSERT OR IGNORE INTO vectors (model, hash, dim, vec) VALUES (?, ?, ?, ?)", rows)
        except sqlite3.Error as e:
            raise translate(e, None) from None
        done += len(part)
        if progress is not None:
            progress(done, total)
    return total


class DenseIndex:
    """The vectors of some texts, as one float32 matrix, searched by cosine.

    ``hashes`` is the caller's list; ``rows[i]`` is the position in it of matrix row ``i``. Hashes
    with no vector for the model are left out (``missing`` lists their positions).
    """

    def __init__(self, model_id: str, hashes: list[str], matrix: np.ndarray, rows: np.ndarray,
                 missing: list[int]) -> None:
        self.model_id = model_id
        self.hashes = hashes
        self.matrix = matrix
        self.rows = rows
        self.missing = missing

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @classmethod
    def load(cls, db: sqlite3.Connection, model_id: str, hashes: list[str]) -> DenseIndex:
        import numpy as np

        hashes = list(hashes)
        wanted = set(hashes)
        found: dict[str, bytes] = {}
        try:
            cur = db.cursor()
            cur.row_factory = None  # plain tuples: a third faster than sqlite3.Row here
            if len(wanted) <= 2 * _IN:  # a few: look each up
                keys = list(wanted)
                for i in range(0, len(keys), _IN):
                    part = keys[i:i + _IN]
                    found.update(cur.execute(
                        f"SELECT hash, vec FROM vectors WHERE model = ? AND hash IN ({','.join('?' * len(part))})",
                        (model_id, *part),
                    ))
            else:
                # Many: read the model's rows in one pass. Walking the whole table in order is about
                # twice as fast as going through the (model, hash) index, as long as this model's
                # rows are at least half of it (other models' vectors are skipped on the way).
                n_model = cur.execute("SELECT count(*) FROM vectors WHERE model = ?", (model_id,)).fetchone()[0]
                n_all = cur.execute("SELECT count(*) FROM vectors").fetchone()[0]
                scan = "NOT INDEXED" if n_all <= 2 * n_model else ""
                found = dict(cur.execute(f"SELECT hash, vec FROM vectors {scan} WHERE model = ?", (model_id,)))
        except sqlite3.Error as e:
            raise translate(e, None) from None
        blobs = [found.get(h) for h in hashes]
        width = len(next(iter(found.values()), b""))
        rows = [i for i, b in enumerate(blobs) if b is not None and len(b) == width]
        missing = [i for i, b in enumerate(blobs) if b is None or len(b) != width]
        dim = width // 2
        matrix = np.frombuffer(b"".join([blobs[i] or b"" for i in rows]), dtype="<f2").reshape(len(rows), dim)
        matrix = matrix.astype(np.float32)
        if len(rows):  # float16 moved the norms by ~1e-4: renormalise, so dot products are cosines
            norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
            matrix *= (1.0 / np.maximum(norms, np.float32(1e-12)))[:, None]
        return cls(model_id, hashes, matrix, np.asarray(rows, dtype=np.int64), missing)

    def scores(self, qvec: np.ndarray, below: int | None = None) -> np.ndarray:
        """Cosine of ``qvec`` with every row (aligned with ``rows``); with ``below``, only with the
        rows of positions before it (a prefix: rows are in position order)."""
        import numpy as np

        q = np.asarray(qvec, dtype=np.float32).reshape(-1)
        if len(self) == 0:
            return np.zeros(0, np.float32)
        if q.shape[0] != self.dim:
            raise ValueError(f"query has {q.shape[0]} dimensions, the index {self.dim} ({self.model_id})")
        n = float(np.linalg.norm(q))
        if n > 0:
            q = q / n
        m = len(self) if below is None else int(np.searchsorted(self.rows, below))
        return self.matrix[:m] @ q

    def search(self, qvec: np.ndarray, k: int, below: int | None = None) -> list[tuple[int, float]]:
        """The ``k`` nearest: (position in ``hashes``, cosine), best first; with ``below``, among
        the positions before it only."""
        import numpy as np

        if k <= 0 or len(self) == 0:
            return []
        s = self.scores(qvec, below)
        k = min(k, len(s))
        if k == 0:
            return []
        top = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
        top = top[np.lexsort((self.rows[top], -s[top]))]  # best first; ties by position
        return [(int(self.rows[i]), float(s[i])) for i in top]
