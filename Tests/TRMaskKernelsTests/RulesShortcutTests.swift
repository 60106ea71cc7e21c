// The cheap sufficient test of the 2026 token rules (`RulesShortcut`): every token it keeps must
// pass on its exact values (`binaryLanes`, the values token_values gives), for every binary
// criterion and advantage statistic, over log-probabilities from -80 to 0 (and just above),
// near-equal and far pairs, thresholds from 1e-7 to 2 and every eps the tests use. Prints the
// share of tokens the test decides. Also the byte packing of the keep lanes, and that
// importanceWeights validates an advantage rule without applying it.

import Foundation
import XCTest

@testable import TRMaskKernels

final class RulesShortcutTests: XCTestCase {
    /// Log-probabilities: -10^k on a grid from -1e-12 to -80, neighbours of each, 0 and a few
    /// positive ones (probabilities above 1: outside the domain, inside the input's).
    private func grid() -> [Float] {
        var values: [Float] = [0, 0.25, 0.0625, 0.03, 1e-3, -0.0]
        var k: Float = -12
        while k <= 1.9 {
            let base = -Float(pow(10, Double(k)))
            let neighbours: [Float] = [base * (1 + 1e-4), base * (1 - 2e-3), base * 1.05, base * 0.9, base.nextDown]
            values.append(base)
            values += neighbours
            k += 0.23
        }
        return values.filter { $0 >= -80 }
    }

    /// For every rule and chunk: the lanes `keeps` claims pass the exact rule. Returns the share claimed.
    private func check(_ criteria: [Criterion], advantage: AdvantageRule?, eps: Double) -> Double {
        let options = ReductionOptions(binaryEps: eps, advantageRule: advantage)
        guard let rules = RulesPass(criteria: criteria, options: options, metrics: false), let shortcut = rules.shortcut else {
            XCTFail("no shortcut for \(criteria) \(String(describing: advantage))")
            return 0
        }
        let values = grid()
        var (claimed, total) = (0, 0)
        for (i, x) in values.enumerated() {
            let partners = (0..<8).map { values[(i + [0, 1, 2, 3, 5, 6, 11, 43][$0]) % values.count] }
            var chunk = RulesChunk()
            (chunk.lt, chunk.lr) = (Lanes(repeating: x), Lanes(partners))
            chunk.delta = chunk.lt - chunk.lr
            chunk.counted = LaneMask(repeating: ~0)
            for sign: Float in [1, -1, 0] {
                let keeps = shortcut.keeps(chunk, sign: Lanes(repeating: sign))
                var stats = BinaryRowStats()
                var counts = [Int](repeating: 0, count: criteria.count + AdvantageCount.slots)
                let exact = counts.withUnsafeMutableBufferPointer {
                    rules.exact(chunk, sign: Lanes(repeating: sign), stats: &stats, rejected: $0)
                }
                for lane in 0..<8 {
                    total += 1
                    guard keeps[lane] != 0 else { continue }
                    claimed += 1
                    XCTAssertNotEqual(exact[lane], 0, "\(criteria) \(String(describing: advantage)) eps \(eps): lt \(x) lr \(partners[lane])")
                }
            }
        }
        return Double(claimed) / Double(total)
    }

    func testShortcutKeepsOnlyTokensThatPassOnExactValues() {
        var shares: [String] = []
        for eps in [0.0, 1e-6, 1e-3] {
            for phi in [1e-7, 1e-4, 1e-2, 0.1, 2.0] {
                for estimator in [Estimator.bdiff, .btv, .bkl, .bklTR, .bklSym] {
                    let lo = estimator == .bdiff ? -phi : -.infinity
                    let share = check([Criterion(.token, estimator, lo: lo, hi: phi)], advantage: nil, eps: eps)
                    shares.append("\(estimator) \(phi): \(share)")
                }
                for statistic in [AdvantageStatistic.bdiff, .bkl] {
                    for (low, high) in [(phi, phi), (phi, phi / 3), (0, phi)] {
                        let rule = AdvantageRule(statistic: statistic, low: low, high: high)
                        _ = check([], advantage: rule, eps: eps)
                    }
                }
            }
            for (low, high) in [(0.99, 1.01), (0.5, 2.0), (1.0, 1.0)] {
                _ = check([], advantage: AdvantageRule(statistic: .ratio, low: low, high: high), eps: eps)
            }
        }
        print("RulesShortcut: share of grid tokens decided without exact values (eps 0):", shares.prefix(25).joined(separator: "; "))
    }

    /// Log-probabilities near 0 (probabilities near 1), where the chi-square bound proves nothing:
    /// -10^k for k from -9 to -0.3, neighbours one float32 step and 0.1 % away, the clamp's own
    /// bounds' neighbourhood, 0, -0, the smallest normal and subnormal magnitudes, and a few
    /// log-probs just above 0.
    private func nearOneGrid() -> [Float] {
        var values: [Float] = [0, -0.0, -Float.leastNormalMagnitude, -Float.leastNonzeroMagnitude, 1e-7, 1e-4, 0.01,
                               Float(log1p(-1e-6)), Float(log1p(-1e-6)).nextUp, Float(log1p(-1e-3)).nextDown]
        var k = -9.0
        while k <= -0.3 {
            let base = -Float(pow(10, k))
            values += [base, base.nextUp, base.nextDown, base * 1.001, base * 0.999]
            k += 0.2
        }
        return values
    }

    /// Every pair of the near-one grid: the lanes `nearOneKeeps` claims must pass `bkl_sym` (both
    /// binary KLs) on their exact values, at every threshold and eps. The bound must also claim
    /// a fair share, or the scan would take the exact path near 1 as before.
    func testNearOneBoundKeepsOnlyTokensThatPassOnExactValues() {
        let values = nearOneGrid()
        var (claimed, total) = (0, 0)
        for eps in [0.0, 1e-8, 1e-6, 1e-3] {
            for phi in [1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.5, 2.0] {
                let options = ReductionOptions(binaryEps: eps)
                guard let rules = RulesPass(criteria: [Criterion(.token, .bklSym, hi: phi)], options: options, metrics: false),
                      let shortcut = rules.shortcut else { return XCTFail("no shortcut at eps \(eps) phi \(phi)") }
                for x in values {
                    for first in stride(from: 0, to: values.count, by: 8) {
                        let partners = (0..<8).map { values[(first + $0) % values.count] }
                        var chunk = RulesChunk()
                        (chunk.lt, chunk.lr) = (Lanes(repeating: x), Lanes(partners))
                        chunk.delta = chunk.lt - chunk.lr
                        chunk.counted = LaneMask(repeating: ~0)
                        let t = absolute(chunk.delta) + Lanes(repeating: 1e-6)
                        let headroom = -lanewiseMin(lanewiseMax(lanewiseMax(chunk.lt, chunk.lr), shortcut.logLow), shortcut.logHigh)
                        let keeps = shortcut.nearOneKeeps(t, chunk, headroom: headroom)
                        var stats = BinaryRowStats()
                        var counts = [Int](repeating: 0, count: 1 + AdvantageCount.slots)
                        let exact = counts.withUnsafeMutableBufferPointer {
                            rules.exact(chunk, sign: Lanes(repeating: .nan), stats: &stats, rejected: $0)
                        }
                        for lane in 0..<8 {
                            total += 1
                            guard keeps[lane] != 0 else { continue }
                            claimed += 1
                            XCTAssertNotEqual(exact[lane], 0, "eps \(eps) phi \(phi): lt \(x) lr \(partners[lane])")
                        }
                    }
                }
            }
        }
        let share = Double(claimed) / Double(total)
        print("nearOneKeeps: share of near-one grid pairs decided without exact values:", share)
        XCTAssertGreaterThan(share, 0.2)
    }

    func testNoShortcutWhereItCannotProveALowerBound() {
        let options = ReductionOptions()
        XCTAssertNil(RulesPass(criteria: [Criterion(.token, .btv, lo: 0.01, hi: 0.2)], options: options, metrics: false)?.shortcut)
        XCTAssertNil(RulesPass(criteria: [Criterion(.token, .bkl, lo: 0, hi: 0.2)], options: options, metrics: false)?.shortcut)
        // Row statistics need every value.
        XCTAssertNil(RulesPass(criteria: [Criterion(.token, .bkl, hi: 0.2)], options: options, metrics: true)?.shortcut)
        XCTAssertNotNil(RulesPass(criteria: [Criterion(.token, .bkl, hi: 0.2)], options: options, metrics: false)?.shortcut)
    }

    func testKeepBytesPacksLanesInOrder() {
        for bits in [0, 1, 0x80, 0xa5, 0x5a, 0xff, 0x3c] {
            var m = LaneMask()
            for lane in 0..<8 where bits >> lane & 1 != 0 { m[lane] = ~0 }
            var expected: UInt64 = 0
            for lane in 0..<8 where bits >> lane & 1 != 0 { expected |= 1 << (8 * UInt64(lane)) }
            XCTAssertEqual(keepBytes(m), expected, "lanes \(bits)")
        }
    }

    func testImportanceWeightsValidateAnAdvantageRuleWithoutApplyingIt() {
        // Row 0 drifts down with a negative advantage: the sequence rule would reject it and the
        // token rule would mask its tokens.
        let lt: [Float] = [-0.5, -0.6, -0.7, -0.8, -0.1, -0.2, -0.3, -0.4]
        let lr: [Float] = [-0.1, -0.1, -0.1, -0.1, -0.1, -0.2, -0.3, -0.4]
        let advantages: [Double] = [-1, 1]
        let rule = AdvantageRule(statistic: .bdiff, low: 0, high: 0, sequenceLimit: 0)
        let weightRule = WeightRule(level: .token, mode: .truncate, hi: 2)
        func weights(_ options: ReductionOptions, withAdvantages: Bool) -> ([Float], Status) {
            var out = [Float](repeating: -1, count: 8)
            let status = lt.withUnsafeBufferPointer { t in
                lr.withUnsafeBufferPointer { r in
                    advantages.withUnsafeBufferPointer { a in
                        out.withUnsafeMutableBufferPointer { o in
                            let batch = Batch(layout: .padded, rows: 2, cols: 4,
                                              source: .logProbs(train: StridedView(base: t.baseAddress, dtype: .f32, rowStride: 4),
                                                                roll: StridedView(base: r.baseAddress, dtype: .f32, rowStride: 4)),
                                              rowAdvantages: withAdvantages ? StridedView(base: a.baseAddress, dtype: .f64) : nil)
                            return importanceWeights(batch, options: options, rule: weightRule, keepRow: nil,
                                                     out: OutView(base: o.baseAddress, rowStride: 4, colStride: 1))
                        }
                    }
                }
            }
            return (out, status)
        }
        let plain = weights(ReductionOptions(), withAdvantages: false)
        let ruled = weights(ReductionOptions(advantageRule: rule), withAdvantages: true)
        XCTAssertEqual(plain.1, .ok)
        XCTAssertEqual(ruled.1, .ok)
        XCTAssertEqual(plain.0, ruled.0)
        XCTAssertTrue(ruled.0[0..<4].allSatisfy { $0 > 0 })
        XCTAssertEqual(weights(ReductionOptions(advantageRule: rule), withAdvantages: false).1, .needsAdvantages)
    }
}
