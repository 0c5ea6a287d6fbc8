// Reference values: computed independently with SciPy 1.17.1 / NumPy 2.4.6 (Debian's python3-scipy
// or any scipy) by the script quoted in each block, and from published examples/tables where
// noted. They are literals here: scipy is not a dependency of the tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  compareProportions, exactUpperTail, fisherExact, fromHistogram, fromValues, hodgesLehmann, hodgesLehmannRatio, mannWhitneyU, normalSf,
  twoProportionZTest, type Alternative,
} from '../controller/analysis/stats.js';
import { LatencyHistogram } from '../common/latency-histogram.js';

/** |got − want| ≤ rel·|want| (or ≤ abs near zero). */
function close(got: number, want: number, rel = 1e-9, what = '') {
  assert.ok(Math.abs(got - want) <= rel * Math.abs(want) + 1e-300, `${what}: got ${got}, want ${want} (rel ${rel})`);
}

test('normal upper tail matches scipy.stats.norm.sf from the centre to 1e-300', () => {
  // python3 -c "import scipy.stats as st; print([st.norm.sf(z) for z in (0,0.5,1,1.96,2.5,3,3.5,5,8,10,20,37,-3)])"
  const ref: [number, number][] = [
    [0, 0.5], [0.5, 0.3085375387259869], [1, 0.15865525393145707], [1.96, 0.024997895148220435],
    [2.5, 0.006209665325776132], [3, 0.0013498980316300933], [3.5, 0.00023262907903552502],
    [5, 2.866515718791933e-07], [8, 6.22096057427174e-16], [10, 7.61985302416047e-24],
    [20, 2.7536241186061556e-89], [37, 5.7255712225239266e-300], [-3, 0.9986501019683699],
  ];
  for (const [z, p] of ref) close(normalSf(z), p, 1e-12, `sf(${z})`);
});

// Mann–Whitney U. Reference script (x = first sample, statistic = U of x):
//   st.mannwhitneyu(x, y, alternative=alt, method='asymptotic'|'exact', use_continuity=True|False)
//   HL: np.median(np.subtract.outer(x, y))
type MwRef = { greaterCont: number; greaterNoCont: number; twoCont: number; twoNoCont: number; greaterExact?: number; twoExact?: number };
function checkMw(name: string, x: number[], y: number[], u: number, ref: MwRef) {
  const X = fromValues(x);
  const Y = fromValues(y);
  const run = (alternative: Alternative, method: 'asymptotic' | 'exact', continuity = true) => mannWhitneyU(X, Y, { alternative, method, continuity });
  assert.equal(run('greater', 'asymptotic').u, u, `${name}: U`);
  close(run('greater', 'asymptotic').pValue, ref.greaterCont, 1e-9, `${name} asymptotic greater`);
  close(run('greater', 'asymptotic', false).pValue, ref.greaterNoCont, 1e-9, `${name} asymptotic greater, no continuity`);
  close(run('two-sided', 'asymptotic').pValue, ref.twoCont, 1e-9, `${name} asymptotic two-sided`);
  close(run('two-sided', 'asymptotic', false).pValue, ref.twoNoCont, 1e-9, `${name} asymptotic two-sided, no continuity`);
  if (ref.greaterExact !== undefined) close(run('greater', 'exact').pValue, ref.greaterExact, 1e-9, `${name} exact greater`);
  if (ref.twoExact !== undefined) close(run('two-sided', 'exact').pValue, ref.twoExact, 1e-9, `${name} exact two-sided`);
}

test('Mann–Whitney: the worked example of scipy.stats.mannwhitneyu\'s documentation (U1 = 17, exact two-sided p = 0.1111)', () => {
  // males = [19, 22, 16, 29, 24], females = [20, 11, 17, 12]
  checkMw('docs', [19, 22, 16, 29, 24], [20, 11, 17, 12], 17, {
    greaterCont: 0.055673443266570206, greaterNoCont: 0.04320536648685,
    twoCont: 0.11134688653314041, twoNoCont: 0.0864107329737,
    greaterExact: 0.05555555555555555, twoExact: 0.1111111111111111,
  });
  // Small samples without ties: 'auto' chooses the exact distribution.
  const auto = mannWhitneyU(fromValues([19, 22, 16, 29, 24]), fromValues([20, 11, 17, 12]), { alternative: 'two-sided' });
  assert.equal(auto.method, 'exact');
  close(auto.pValue, 0.1111111111111111);
});

test('Mann–Whitney: tiny samples (3 vs 7) and 20 vs 20 interleaved, exact and asymptotic', () => {
  // x = [1, 4, 9], y = [2, 3, 5, 6, 7, 8, 10]
  checkMw('3v7', [1, 4, 9], [2, 3, 5, 6, 7, 8, 10], 8, {
    greaterCont: 0.7529377277953682, greaterNoCont: 0.7155942997933313,
    twoCont: 0.648503379652976, twoNoCont: 0.5688114004133373,
    greaterExact: 0.7416666666666667, twoExact: 0.6666666666666666,
  });
  // x = [3i+1 for i in range(20)], y = [3i for i in range(20)]
  const x = Array.from({ length: 20 }, (_, i) => 3 * i + 1);
  const y = Array.from({ length: 20 }, (_, i) => 3 * i);
  checkMw('20v20', x, y, 210, {
    greaterCont: 0.3985987096345874, greaterNoCont: 0.39338746600370167,
    twoCont: 0.7971974192691748, twoNoCont: 0.7867749320074033,
    greaterExact: 0.3997035935808485, twoExact: 0.799407187161697,
  });
});

test('Mann–Whitney exact distribution reproduces the published critical values for n1 = n2 = 20', () => {
  // Standard U tables (e.g. Siegel & Castellan; any Mann–Whitney table): n1 = n2 = 20, critical U
  // 127 two-tailed at α = .05, 138 one-tailed at α = .05. Cumulative probabilities from
  // scipy.stats._mannwhitneyu._MWU(20, 20).cdf(u): 127 → 0.02454516259468622,
  // 128 → 0.02619976093642486, 138 → 0.048249776218050135, 139 → 0.05108047497659142.
  // P(U ≤ u) = P(U ≥ 400 − u) by symmetry.
  const cdf = (u: number) => exactUpperTail(20, 20, 400 - u);
  close(cdf(127), 0.02454516259468622, 1e-12, 'P(U<=127)');
  close(cdf(128), 0.02619976093642486, 1e-12, 'P(U<=128)');
  close(cdf(138), 0.048249776218050135, 1e-12, 'P(U<=138)');
  close(cdf(139), 0.05108047497659142, 1e-12, 'P(U<=139)');
  assert.ok(cdf(127) <= 0.025 && cdf(128) > 0.025);
  assert.ok(cdf(138) <= 0.05 && cdf(139) > 0.05);
});

test('Mann–Whitney with many ties (tie-corrected normal approximation)', () => {
  // x = [(i*37) % 23 for i in range(60)], y = [(i*11) % 19 + 2 for i in range(50)]
  const x = Array.from({ length: 60 }, (_, i) => (i * 37) % 23);
  const y = Array.from({ length: 50 }, (_, i) => ((i * 11) % 19) + 2);
  checkMw('ties', x, y, 1508.5, {
    greaterCont: 0.4808283305907383, greaterNoCont: 0.47963111234916606,
    twoCont: 0.9616566611814766, twoNoCont: 0.9592622246983321,
  });
  const auto = mannWhitneyU(fromValues(x), fromValues(y));
  assert.equal(auto.method, 'asymptotic');
  assert.equal(auto.ties, true);
  assert.throws(() => mannWhitneyU(fromValues(x), fromValues(y), { method: 'exact' }), /ties/);
});

test('Mann–Whitney: a clear shift gives a tiny p-value (300 vs 300, far tail)', () => {
  // x = [(i*7) % 50 + 10 for i in range(300)], y = [(i*13) % 50 for i in range(300)]
  const x = Array.from({ length: 300 }, (_, i) => ((i * 7) % 50) + 10);
  const y = Array.from({ length: 300 }, (_, i) => (i * 13) % 50);
  checkMw('shift', x, y, 61200, {
    greaterCont: 1.1606522051638352e-14, greaterNoCont: 1.1585330858620526e-14,
    twoCont: 2.3213044103276705e-14, twoNoCont: 2.3170661717241052e-14,
  });
  // And the other direction is not significant at all.
  assert.ok(mannWhitneyU(fromValues(y), fromValues(x), { alternative: 'greater' }).pValue > 0.999);
});

test('Mann–Whitney: all values equal gives p = 1 (no evidence), not NaN', () => {
  const r = mannWhitneyU(fromValues([5, 5, 5]), fromValues([5, 5, 5, 5]), { alternative: 'greater' });
  assert.equal(r.pValue, 1);
  assert.equal(r.u, 6);
});

test('Mann–Whitney on histograms equals the test on the same values (values below 256 µs are exact bins)', () => {
  const x = Array.from({ length: 60 }, (_, i) => (i * 37) % 23);
  const y = Array.from({ length: 50 }, (_, i) => ((i * 11) % 19) + 2);
  const hx = new LatencyHistogram();
  const hy = new LatencyHistogram();
  x.forEach((v) => hx.record(v));
  y.forEach((v) => hy.record(v));
  const r = mannWhitneyU(hx, hy, { alternative: 'greater' });
  assert.equal(r.u, 1508.5);
  close(r.pValue, 0.4808283305907383);
});

test('Hodges–Lehmann: median of pairwise differences, odd and even pair counts, ties', () => {
  // np.median(np.subtract.outer(x, y)) for the data sets above
  assert.equal(hodgesLehmann(fromValues([19, 22, 16, 29, 24]), fromValues([20, 11, 17, 12])), 7); // 20 pairs (even)
  assert.equal(hodgesLehmann(fromValues([1, 4, 9]), fromValues([2, 3, 5, 6, 7, 8, 10])), -1); // 21 pairs (odd)
  const x20 = Array.from({ length: 20 }, (_, i) => 3 * i + 1);
  const y20 = Array.from({ length: 20 }, (_, i) => 3 * i);
  assert.equal(hodgesLehmann(fromValues(x20), fromValues(y20)), 1);
  const xt = Array.from({ length: 60 }, (_, i) => (i * 37) % 23);
  const yt = Array.from({ length: 50 }, (_, i) => ((i * 11) % 19) + 2);
  assert.equal(hodgesLehmann(fromValues(xt), fromValues(yt)), 0);
  const xs = Array.from({ length: 300 }, (_, i) => ((i * 7) % 50) + 10);
  const ys = Array.from({ length: 300 }, (_, i) => (i * 13) % 50);
  assert.equal(hodgesLehmann(fromValues(xs), fromValues(ys)), 10);
});

test('Hodges–Lehmann agrees with brute force on random small samples (non-integer values too)', () => {
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let round = 0; round < 200; round++) {
    const x = Array.from({ length: 1 + Math.floor(rnd() * 15) }, () => Math.floor(rnd() * 20) * (round % 2 ? 0.37 : 1));
    const y = Array.from({ length: 1 + Math.floor(rnd() * 15) }, () => Math.floor(rnd() * 20) * (round % 2 ? 0.37 : 1));
    const d = x.flatMap((a) => y.map((b) => a - b)).sort((a, b) => a - b);
    const m = d.length % 2 ? d[(d.length - 1) / 2]! : (d[d.length / 2 - 1]! + d[d.length / 2]!) / 2;
    close(hodgesLehmann(fromValues(x), fromValues(y)), m, 1e-12, `round ${round}`);
  }
});

test('Hodges–Lehmann on latency histograms recovers a 40 ms shift to bin precision', () => {
  const base = new LatencyHistogram();
  const canary = new LatencyHistogram();
  for (let i = 0; i < 5000; i++) {
    const v = 20_000 + ((i * 7919) % 5000); // 20..25 ms
    base.record(v);
    canary.record(v + 40_000);
  }
  const hl = hodgesLehmann(canary, base);
  assert.ok(Math.abs(hl - 40_000) < 0.01 * 65_000, `HL ${hl}`);
  assert.equal(hodgesLehmann(base, base.clone()), 0);
  const s = fromHistogram(base);
  assert.equal(s.n, 5000);
});

test('Hodges–Lehmann ratio: median of pairwise ratios (geometric mean of the middle two when even)', () => {
  // np.exp(np.median(np.subtract.outer(np.log(x), np.log(y))))
  close(hodgesLehmannRatio(fromValues([19, 22, 16, 29, 24]), fromValues([20, 11, 17, 12])), 1.4522709489247898, 1e-12, 'docs example');
  close(hodgesLehmannRatio(fromValues([1, 4, 9]), fromValues([2, 3, 5, 6, 7, 8, 10])), 0.6666666666666666, 1e-12, '3v7');
  const x = Array.from({ length: 300 }, (_, i) => ((i * 7) % 50) + 10);
  const y = Array.from({ length: 300 }, (_, i) => ((i * 13) % 50) + 1);
  close(hodgesLehmannRatio(fromValues(x), fromValues(y)), 1.352941176470588, 1e-12, '300v300');
  // Scale-free: every value × 1.3 gives exactly 1.3 at any spread.
  const wide = Array.from({ length: 200 }, (_, i) => 10 * 1.05 ** i);
  close(hodgesLehmannRatio(fromValues(wide.map((v) => v * 1.3)), fromValues(wide)), 1.3, 1e-12, 'scale');
});

test('Fisher\'s exact test: lady tasting tea (Fisher 1935, one-sided p = 0.2429) and scipy.stats.fisher_exact', () => {
  close(fisherExact(3, 1, 1, 3, 'greater').pValue, 0.24285714285714283, 1e-12, 'tea greater'); // = 17/70
  // st.fisher_exact(table, alternative=alt).pvalue
  const ref: [[number, number, number, number], number, number][] = [
    [[3, 1, 1, 3], 0.24285714285714283, 0.48571428571428565],
    [[5, 95, 1, 199], 0.016876995031530548, 0.016876995031530548],
    [[0, 10, 3, 7], 1.0, 0.21052631578947367],
    [[10, 990, 2, 998], 0.019005623746425695, 0.03801124749285139],
    [[30, 970, 10, 990], 0.0010041667809150047, 0.0020083335618300093],
    [[7, 3, 2, 8], 0.03488925934746368, 0.06977851869492736],
  ];
  for (const [[a, b, c, d], greater, two] of ref) {
    close(fisherExact(a, b, c, d, 'greater').pValue, greater, 1e-9, `[[${a},${b}],[${c},${d}]] greater`);
    close(fisherExact(a, b, c, d, 'two-sided').pValue, two, 1e-9, `[[${a},${b}],[${c},${d}]] two-sided`);
  }
  assert.equal(fisherExact(0, 10, 0, 10).pValue, 1, 'no events at all');
  assert.throws(() => fisherExact(-1, 2, 3, 4), RangeError);
});

test('two-proportion z-test equals the uncorrected chi-square test (scipy.stats.chi2_contingency, correction=False)', () => {
  // chi2, p, _, _ = st.chi2_contingency([[x1, n1-x1], [x2, n2-x2]], correction=False); one-sided p = p/2 (z > 0)
  const ref: [number, number, number, number, number, number][] = [
    [30, 1000, 10, 1000, 10.204081632653061, 0.001401301580960214],
    [120, 10000, 100, 10000, 1.838404265097895, 0.17513809234126443],
    [45, 2000, 30, 2500, 7.474576271186437, 0.006257629080442166],
  ];
  for (const [x1, n1, x2, n2, chi2, pTwo] of ref) {
    const g = twoProportionZTest(x1, n1, x2, n2, 'greater');
    close(g.z * g.z, chi2, 1e-12, 'z²');
    close(g.pValue, pTwo / 2, 1e-9, `${x1}/${n1} vs ${x2}/${n2} greater`);
    close(twoProportionZTest(x1, n1, x2, n2, 'two-sided').pValue, pTwo, 1e-9, 'two-sided');
    // Reversed groups: the canary is better, one-sided p is large.
    assert.ok(twoProportionZTest(x2, n2, x1, n1, 'greater').pValue > 0.9);
  }
  assert.equal(twoProportionZTest(0, 100, 0, 100).pValue, 1);
  assert.throws(() => twoProportionZTest(5, 3, 0, 10), RangeError);
});

test('compareProportions uses Fisher below 5 expected events (Cochran), the z-test above', () => {
  assert.equal(compareProportions(3, 100, 0, 100).method, 'fisher');
  assert.equal(compareProportions(4, 1000, 2, 1000).method, 'fisher'); // expected events per side: 6·1000/2000 = 3
  assert.equal(compareProportions(10, 1000, 2, 1000).method, 'z-test'); // 12·1000/2000 = 6
  assert.equal(compareProportions(30, 1000, 10, 1000).method, 'z-test');
  close(compareProportions(3, 4, 1, 4).pValue, 0.24285714285714283);
});
