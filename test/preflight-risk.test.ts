import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { peakRisk, riskAt, scheduleRisk } from '../common/mixed-version-risk.js';
import { MoltError } from '../common/errors.js';

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} != ${b}`);

describe('riskAt: P_inc(s) = s(1 - s^c)', () => {
  const table: Array<[number, number, number]> = [
    // share, c, hand-computed P_inc
    [0, 1, 0],
    [1, 1, 0],
    [1, 5, 0],
    [0.5, 1, 0.25], // 0.5 * 0.5
    [0.1, 1, 0.09], // 0.1 * 0.9
    [0.5, 2, 0.375], // 0.5 * (1 - 0.25)
    [0.75, 3, 0.43359375], // 0.75 * (1 - 0.421875)
    [0.25, 3, 0.24609375], // 0.25 * (1 - 0.015625)
  ];
  for (const [s, c, want] of table) it(`s=${s}, c=${c} -> ${want}`, () => close(riskAt(s, c), want));

  it('bad input is a validation error', () => {
    for (const [s, c] of [[-0.1, 1], [1.1, 1], [Number.NaN, 1], [0.5, 0], [0.5, 1.5]] as const) {
      assert.throws(() => riskAt(s, c), (e: unknown) => e instanceof MoltError && e.code === 'MOLT_ERR_VALIDATION');
    }
  });

  it('peaks at s* = (1/(c+1))^(1/c)', () => {
    close(peakRisk(1).share, 0.5);
    close(peakRisk(1).risk, 0.25);
    close(peakRisk(2).share, Math.sqrt(1 / 3)); // 0.57735…
    close(peakRisk(2).risk, Math.sqrt(1 / 3) * (2 / 3)); // 0.3849…
    for (const c of [1, 2, 3, 10]) {
      const p = peakRisk(c);
      for (const d of [-0.01, 0.01]) assert.ok(riskAt(p.share + d, c) < p.risk, `c=${c}: the peak is a maximum`);
    }
  });
});

describe('scheduleRisk', () => {
  it('README schedule, c=1: mean weighted by pause, max over steps', () => {
    // 5% for 60s: 0.05*0.95 = 0.0475; 50% for 5m: 0.25; 100%: 0
    // mean = (60*0.0475 + 300*0.25) / 360 = 77.85 / 360 = 0.21625
    const r = scheduleRisk([{ weight: 5, pauseMs: 60_000 }, { weight: 50, pauseMs: 300_000 }, { weight: 100 }], 1);
    close(r.mean, 0.21625);
    close(r.max, 0.25);
    assert.deepEqual(r.perStep.map((x) => Math.round(x * 1e6) / 1e6), [0.0475, 0.25, 0]);
    assert.equal(r.open, undefined);
  });

  it('c=3, unequal pauses', () => {
    // 0.0999 (1m), 0.24609375 (1m), 0.43359375 (2m) -> (0.0999 + 0.24609375 + 2*0.43359375) / 4
    const r = scheduleRisk([{ weight: 10, pauseMs: 60_000 }, { weight: 25, pauseMs: 60_000 }, { weight: 75, pauseMs: 120_000 }, { weight: 100 }], 3);
    close(r.mean, 0.3032953125);
    close(r.max, 0.43359375);
  });

  it('a last step held until promoted below 100% counts in max and open, not in the mean', () => {
    const r = scheduleRisk([{ weight: 10, pauseMs: 1000 }, { weight: 50 }], 1);
    close(r.mean, 0.09);
    close(r.max, 0.25);
    close(r.open!, 0.25);
  });

  it('no pause at all: mean = max', () => {
    const r = scheduleRisk([{ weight: 30 }], 2);
    close(r.mean, 0.3 * (1 - 0.09));
    close(r.max, r.mean);
    assert.throws(() => scheduleRisk([], 1), MoltError);
  });
});
