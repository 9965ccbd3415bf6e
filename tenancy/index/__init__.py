"""In-memory face index: cosine top-k over L2-normalised float32 vectors, de-duplicated by person.

Decrypted vectors live only here, in RAM. Two tiers:

Exact tier (always present; the ANN tier re-ranks against it): numpy `vectors @ query` (BLAS sgemv/sgemm,
both cores) followed by a threshold mask and a partial sort of the survivors. Measured on this 2-core
machine, single-probe p50:
    100K x 512: numpy 12 ms, FAISS IndexFlatIP 22 ms (FAISS parallelises over queries, so one probe runs
                on one core); 1M x 512: numpy ~200 ms (memory-bandwidth bound: 2 GB per probe).
    sqlite-vec vec0 is slower than both (see benchmarks/search.py for the run's numbers).
Numpy is therefore the exact tier. Thresholding before partitioning makes it slightly cheaper than a
plain matmul + argpartition, because only the faces above the threshold are partitioned.

ANN tier (len >= ann_min_faces): a FAISS PQ fast-scan index (4-bit product quantisation, one sub-quantiser
per 4 dims: d/8 bytes per face) scanned for >= 64 candidates, which are then re-ranked exactly from the
float32 vectors. Graded on a gallery calibrated on real photos (benchmarks/search_tiers.py: anisotropic,
clustered identities; recall per genuine-similarity band), 100K x 512, 2026-12-02, shared host (load 2-4):
    PQ fast-scan d/4 sub-quantisers + re-rank of 64: same top-1 as exact in every band, 0.45 ms (exact 6.5);
    the earlier d/8 sub-quantisers: 0.85 of the exact top-1 at genuine cosine 0.35-0.5, 0.26 ms;
    HNSW-Flat M=32: 0.53 / 0.73 at efSearch 64 / 256 in that band (0.48 / 1.52 ms);
    IVF1024,PQ64: 0.22 / 0.24 at nprobe 16 / 64, and impostors accepted where exact answers unknown.
The first choice was made on vectors uniform on the sphere, probes at cosine 0.7 to their source:
    HNSW-Flat M=32 efC=40, 100K x 512: build 51 s (=> ~10 min at 1M on 2 cores), recall@1 0.63 at
        efSearch 64 (uniform high-dimensional data defeats graph navigation);
    IVF1024-Flat, 1M x 512: recall@1 0.58 / 0.89 / 0.96 at nprobe 16 / 64 / 128 (2.8 / 12 / 21 ms);
    PQ fast-scan + exact re-rank of 64 candidates, 1M x 512: recall@1 1.00 at 3.2 ms, build 3.5 s.
The fast scan is still linear in n but reads 16x fewer bytes than the float32 scan, with SIMD lookup
tables, which is a >= 10x speed-up at 1M with no recall loss after re-ranking.
Adds append codes (no retraining); removals tombstone the code and the index is rebuilt (retrained) once
tombstones exceed a fraction of it.

GPU tier: when faiss reports GPUs (or use_gpu=True), a FAISS flat inner-product index on the GPU(s) mirrors
the rows and returns the top candidates of each query (k <= 2048: FAISS GPU's k-selection refuses more), so
only k scores per query come back to the host. The candidates are re-scored canonically on the host
(`exact_scores`) and de-duplicated by person; k widens x4 while the persons found are not provably the top_k
(the same pruning bound as the exact tier), and a query that would need k > 2048 is scored by the exact tier
on the host. The ANN tier is not built (brute force on a GPU beats it). The device index is built by
`flat_index(dim)`; tests inject a CPU `faiss.IndexFlatIP` with the same k limit to run this path without a GPU.

Rejections ("not this person", tenancy/store/): a person may hold negative examples. For a probe q and a
person P with faces F and rejections R, P is a candidate only if max cos(q, F) > max cos(q, R), and max cos(q, F)
passes the threshold (centroid search: cos(q, centroid) > max cos(q, R)). Only rejections scoring at or above
the threshold can veto anyone (a candidate's best face is at least that), so a search asks the tier for
top_k + V persons, V = the persons with such a rejection for this probe, drops the vetoed ones and cuts at
top_k: exact, since at most V persons ranked above a kept one are dropped. Rejection scores are canonical
(`exact_scores`), so every shard (each holds all of the tenant's rejections) vetoes alike, and a shard's
filtered top_k still merges exactly (`merge_matches`: a person kept globally is kept by the shard holding
its best face). A tenant with no rejections pays one length check per search.

The rooms: `face_index` (`FaceIndex`), `scoring` (unit vectors, canonical scores, tie order), `ann` (the PQ
fast-scan tier), `gpu` (the device index) and `merge` (shards' answers merged). Callers import from here.
"""

from tenancy.index.face_index import FaceIndex
from tenancy.index.gpu import GPU_MAX_K, gpu_flat_index
from tenancy.index.merge import merge_matches, merge_search
from tenancy.index.scoring import Match, exact_scores, rank_order, score_slack

__all__ = ["GPU_MAX_K", "FaceIndex", "Match", "exact_scores", "gpu_flat_index", "merge_matches", "merge_search",
           "rank_order", "score_slack"]
