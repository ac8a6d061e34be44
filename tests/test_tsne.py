"""The exact t-SNE in JAX (`mnist_ae.core.tsne`) against the definitions, written out here in numpy or
as a plain KL divergence that JAX differentiates, and a sweep's maps in one call against one map
per member. Its map quality against scikit-learn's is in test_analysis.py (with the other backends)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import REPO
from mnist_ae.analysis import embed, map_process
from mnist_ae.core import tsne as exact
from mnist_ae.data import load_dataset


@pytest.fixture(scope="module")
def codes() -> np.ndarray:
    """300 real digits as 20-dim points (a fixed random projection of the pixels: structure, not noise)."""
    images = load_dataset("mnist").test_images[:300].reshape(300, -1).astype(np.float32) / 255.0
    return images @ np.random.default_rng(0).normal(size=(784, 20)).astype(np.float32) / 10.0


def test_each_points_affinities_have_the_asked_perplexity_over_its_nearest_neighbours(codes):
    """P(j|i) is Gaussian in the squared distance over i's 3 x perplexity + 1 nearest neighbours with
    2^entropy = perplexity, and P is (P(j|i) + P(i|j)) / 2N: recovered from P by hand in numpy."""
    perplexity, n = 10.0, len(codes)
    p_nn = np.asarray(exact.affinities(jnp.asarray(codes), perplexity), np.float64)
    chex.assert_shape(p_nn, (n, n))
    np.testing.assert_allclose(p_nn, p_nn.T, atol=1e-9)
    assert p_nn.sum() == pytest.approx(1.0, abs=1e-5) and np.all(np.diag(p_nn) == 0) and np.all(p_nn >= 0)
    d2_nn = np.square(codes[:, None, :].astype(np.float64) - codes[None, :, :]).sum(-1)
    np.fill_diagonal(d2_nn, np.inf)
    k = int(3 * perplexity + 1)
    nearest_nk = np.argsort(d2_nn, axis=1)[:, :k]
    # the conditional distributions, one bisection per row in numpy, then symmetrised
    cond_nn = np.zeros((n, n))
    for i in range(n):
        d2 = d2_nn[i, nearest_nk[i]] - d2_nn[i, nearest_nk[i]].min()
        lo, hi = -50.0, 50.0  # log of the precision
        for _ in range(100):
            w = np.exp(-d2 * np.exp((lo + hi) / 2))
            p = w / w.sum()
            entropy = -np.sum(p[p > 0] * np.log(p[p > 0]))
            lo, hi = ((lo + hi) / 2, hi) if entropy > np.log(perplexity) else (lo, (lo + hi) / 2)
        cond_nn[i, nearest_nk[i]] = p
        assert np.exp(entropy) == pytest.approx(perplexity, rel=1e-3)
    np.testing.assert_allclose(p_nn, (cond_nn + cond_nn.T) / (2 * n), rtol=1e-3, atol=1e-8)
    assert np.all(p_nn[(cond_nn + cond_nn.T) == 0] == 0)  # no mass beyond the 3 x perplexity + 1 nearest


@pytest.mark.slow  # an edge case
def test_fewer_points_than_neighbours_use_every_other_point_and_a_perplexity_they_can_reach(codes):
    """12 points, perplexity 5: each point's distribution spans the 11 others (not 3 x 5 + 1); a map
    asked for perplexity 30 on 30 points is the map at (30 - 1) / 3, the most 30 points allow."""
    p_nn = np.asarray(exact.affinities(jnp.asarray(codes[:12]), 5.0))
    assert np.all((p_nn > 0) == ~np.eye(12, dtype=bool))
    chex.assert_trees_all_close(p_nn.sum(), 1.0, atol=1e-5)
    run = jax.jit(exact.tsne, static_argnames=("perplexity", "n_iter"))
    key = jax.random.PRNGKey(0)
    chex.assert_trees_all_equal(run(jnp.asarray(codes[:30]), key, perplexity=30.0, n_iter=20),
                                run(jnp.asarray(codes[:30]), key, perplexity=29 / 3, n_iter=20))
    assert not np.allclose(run(jnp.asarray(codes[:30]), key, perplexity=30.0, n_iter=20),
                           run(jnp.asarray(codes[:30]), key, perplexity=28 / 3, n_iter=20))


def test_the_map_starts_from_pca_at_any_scale_and_its_rate_is_scikit_learns_auto_rate(codes):
    """Perplexity-calibrated affinities and a start rescaled to std 1e-4 make the first step the same
    for codes a thousand times smaller (a random start would not be); the rate is max(N / 48, 50)."""
    run = jax.jit(exact.tsne, static_argnames="n_iter")
    key = jax.random.PRNGKey(0)
    big, small = (np.asarray(run(jnp.asarray(c), key, n_iter=1)) for c in (codes, codes * 1e-3))
    np.testing.assert_allclose(small, big, rtol=1e-3, atol=1e-3 * np.abs(big).max())
    assert (exact.learning_rate(1000), exact.learning_rate(4800)) == (50.0, 100.0)


def test_the_gradient_is_that_of_the_kl_divergence_to_the_student_t_map():
    """kl_gradient against JAX's derivative of KL(P || Q) written out from its definition; early
    exaggeration a scales P in the attraction only, so with a = 12 the objective is
    -sum(a P log num) + log(sum num), num = 1 / (1 + |y_i - y_j|^2) (the KL for a = 1, up to a constant)."""
    rng = np.random.default_rng(1)
    a_nn = rng.uniform(size=(40, 40))
    a_nn = a_nn + a_nn.T
    np.fill_diagonal(a_nn, 0)
    p_nn = jnp.asarray(a_nn / a_nn.sum(), jnp.float32)
    y_nd = jnp.asarray(rng.normal(size=(40, 2)), jnp.float32)
    off = ~jnp.eye(40, dtype=bool)

    def num(y: jax.Array) -> jax.Array:
        return jnp.where(off, 1.0 / (1.0 + jnp.sum(jnp.square(y[:, None, :] - y[None, :, :]), -1)), 0.0)

    def kl(y: jax.Array) -> jax.Array:
        q = num(y) / num(y).sum()
        return jnp.sum(jnp.where(off, p_nn * jnp.log(p_nn / jnp.where(off, q, 1.0)), 0.0))

    def exaggerated(y: jax.Array) -> jax.Array:
        return -jnp.sum(jnp.where(off, 12.0 * p_nn * jnp.log(jnp.where(off, num(y), 1.0)), 0.0)) + jnp.log(num(y).sum())

    np.testing.assert_allclose(exact.kl_gradient(p_nn, y_nd, 1.0), jax.grad(kl)(y_nd), rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(exact.kl_gradient(p_nn, y_nd, 12.0), jax.grad(exaggerated)(y_nd), rtol=2e-4, atol=1e-6)


def neighbour_overlap(x_nl: np.ndarray, y_nd: np.ndarray) -> float:
    """The mean share of each point's 5 nearest map neighbours that are among its 30 nearest in `x_nl`."""
    d_x, d_y = (np.square(a[:, None] - a[None]).sum(-1) for a in (x_nl, y_nd))
    np.fill_diagonal(d_x, np.inf)
    np.fill_diagonal(d_y, np.inf)
    near_x, near_y = np.argsort(d_x, 1)[:, :30], np.argsort(d_y, 1)[:, :5]
    return float(np.mean([len(set(near_y[i]) & set(near_x[i])) / 5 for i in range(len(x_nl))]))


def test_a_map_keeps_neighbours_together_and_codes_without_variation_start_at_random(codes):
    """As many map neighbours are true neighbours as in scikit-learn's exact t-SNE of the same codes
    (0.805), to 0.03: the compiled program's rounding alone moves this number by about 0.02."""
    from sklearn.manifold import TSNE

    y_n2 = np.asarray(jax.jit(exact.tsne)(jnp.asarray(codes), jax.random.PRNGKey(0)))
    chex.assert_shape(y_n2, (300, 2))
    chex.assert_tree_all_finite(y_n2)
    reference = TSNE(2, method="exact", init="pca", random_state=0).fit_transform(codes.astype(np.float64))
    assert neighbour_overlap(codes, y_n2) > neighbour_overlap(codes, reference) - 0.03
    one_unit = np.asarray(jax.jit(exact.tsne)(jnp.asarray(codes[:, :1]), jax.random.PRNGKey(0)))  # fewer features than dims
    chex.assert_tree_all_finite(one_unit)
    assert np.std(one_unit[:, 1]) > 0  # a 2-D map, not a line


def test_a_sweeps_maps_in_one_call_map_each_members_own_units(codes):
    """Members of widths 3 and 20 in one [M, N, widest] array, the narrow member's unused units holding
    unrelated numbers (as a sweep's masked units may): its map follows its 3 units and ignores the
    rest, and each map is as faithful as that member's map of its own units alone. (Not equal to it:
    t-SNE amplifies the rounding differences of another compiled program.)"""
    garbage = np.random.default_rng(2).normal(size=(200, 17)).astype(np.float32)
    codes_mnl = np.stack([np.concatenate([codes[:200, :3], garbage], 1), codes[:200]])
    maps = embed.member_maps(codes_mnl, [3, 20], seed=0)
    chex.assert_shape(maps, (2, 200, 2))
    assert neighbour_overlap(garbage, maps[0]) < 0.3 < 0.7 < neighbour_overlap(codes[:200, :3], maps[0])
    for m, width in enumerate((3, 20)):
        alone = embed.tsne(codes[:200, :width], 2, seed=0)
        assert abs(neighbour_overlap(codes[:200, :width], maps[m]) - neighbour_overlap(codes[:200, :width], alone)) < 0.05
    assert embed.resolved_backend("auto", 3000) == "exact"  # the documented boundary: exact up to 3,000 points
    assert embed.resolved_backend("auto", 3001) == "opentsne"


@pytest.mark.slow  # second check of the map's schedule
def test_the_exaggeration_phase_lasts_the_asked_iterations(codes):
    """12 iterations all exaggerated (momentum 0.5) are the same map whether the phase is asked for 12
    or 250 iterations; asked for 7, the last 5 run without exaggeration and the map differs. The
    default phase is scikit-learn's 250."""
    run = jax.jit(exact.tsne, static_argnames=("n_iter", "exaggeration_iters"))
    key, x = jax.random.PRNGKey(0), jnp.asarray(codes[:100])
    whole = run(x, key, n_iter=12, exaggeration_iters=12)
    chex.assert_trees_all_equal(whole, run(x, key, n_iter=12, exaggeration_iters=250))
    assert not np.allclose(whole, run(x, key, n_iter=12, exaggeration_iters=7), atol=1e-6)
    assert exact.EXAGGERATION_ITERS == 250
    chex.assert_trees_all_equal(run(x, key, n_iter=12), whole)


@pytest.mark.slow
def test_a_map_in_the_background_is_the_map_drawn_here(codes):
    """`embed.background_map`: openTSNE's map in a child process (no GIL shared with the analysis) and
    the exact one in a thread equal `embed.tsne`'s, with the seconds each took."""
    for backend in ("opentsne", "exact"):
        with embed.background_map(codes[:200], 2, seed=3, backend=backend, threads=1) as job:
            map_n2, seconds = job.result()
        assert isinstance(job, embed.MapProcess) == (backend == "opentsne")
        chex.assert_trees_all_equal(map_n2, embed.tsne(codes[:200], 2, seed=3, backend=backend, threads=1))
        assert seconds > 0


def test_a_failed_map_process_is_one_line_and_a_running_one_is_stopped_with_its_files(codes):
    with embed.MapProcess(codes[:200], 2, seed=0, perplexity=30.0, max_iter=250, exaggeration_iter=100,
                          threads=1, n_jobs=2) as job:
        with pytest.raises(RuntimeError, match=r"^the t-SNE map's process failed: TypeError: .*n_jobs[^\n]*$"):
            job.result()
    with embed.MapProcess(np.tile(codes, (20, 1)), 2, seed=0, perplexity=30.0, max_iter=250, exaggeration_iter=100,
                          threads=1) as job:
        folder = job.path
        assert folder.is_dir()
    assert job.child.returncode is not None and not folder.exists()


def test_a_map_process_dies_with_its_parent_even_by_kill_9_and_its_folder_is_removed_later(tmp_path):
    """kill -9 of a run left its t-SNE child running as an orphan and its exchange folder behind: the
    child now dies with its parent (the kernel's parent-death signal), and the next map removes the
    folder of a dead PID."""
    script = ("import numpy as np, sys, time\nfrom mnist_ae.analysis.map_process import MapProcess\n"
              "job = MapProcess(np.random.default_rng(0).normal(size=(6000, 20)).astype(np.float32), 2, seed=0,"
              " perplexity=30.0, max_iter=5000, exaggeration_iter=100, threads=1)\n"
              "print(job.child.pid, job.path, flush=True)\ntime.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    child_pid, folder = parent.stdout.readline().split()
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while _running(int(child_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(int(child_pid))
    assert Path(folder).is_dir()  # nobody cleaned it up after the kill...
    map_process.remove_orphaned_folders()
    assert not Path(folder).exists()  # ...until the next map looks


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its (dead) parent's reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
