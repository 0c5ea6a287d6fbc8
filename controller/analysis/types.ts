// Shared types of canary analysis (controller/analysis/*).

export type Verdict = 'Pass' | 'Fail' | 'Inconclusive';

/** One metric's verdict with the evidence behind it. */
export interface MetricResult {
  /** 'latency', 'errors', or the name of a Prometheus query. */
  metric: string;
  kind: 'latency' | 'errors' | 'prometheus';
  verdict: Verdict;
  /** One line for status, logs and the rollback reason, e.g. "latency: p50 62 ms vs 21 ms (+195 %), U-test p<0.001". */
  message: string;
}

/** Combined verdict of one analysis run. */
export interface AnalysisResult {
  verdict: Verdict;
  /** The failing (else inconclusive, else all) metrics' messages joined by "; ". */
  message: string;
  metrics: MetricResult[];
}

/**
 * Any Fail fails the run; otherwise any Inconclusive makes it Inconclusive; otherwise Pass.
 * No metrics at all is Inconclusive (nothing was judged: never a silent pass).
 */
export function combine(metrics: MetricResult[]): AnalysisResult {
  if (metrics.length === 0) return { verdict: 'Inconclusive', message: 'no metric was judged', metrics };
  const pick = (v: 'Fail' | 'Inconclusive') => metrics.filter((m) => m.verdict === v);
  const failed = pick('Fail');
  const inconclusive = pick('Inconclusive');
  const verdict: Verdict = failed.length ? 'Fail' : inconclusive.length ? 'Inconclusive' : 'Pass';
  const shown = failed.length ? failed : inconclusive.length ? inconclusive : metrics;
  return { verdict, message: shown.map((m) => m.message).join('; '), metrics };
}
