// The Swift API for the rules trainers add beside the mask: the length-neutral criteria against
// rows.json (SPEC §4.4), importance weights against a float64 recomputation (SPEC §5), metrics
// against the mask's own outputs (SPEC §9), and the refusals of each.
//
// Tolerances: LN-TRM adds non-negative terms w_t tv_t, so the SPEC §3 sum bound (2e-6) plus the
// per-token tv bound (4e-6) is relative to the statistic itself. A sequence weight is exp of a
// float64 sum of float32 deltas: relative error within exp(2e-6 sum|delta|) - 1, plus the float32
// rounding of the weight.

import Foundation
import TRMask
import XCTest

final class RolloutCorrectionTests: XCTestCase {
    func testLengthNeutralStatisticsMatchRowsJSON() throws {
        let cases = try XCTUnwrap(loadVectors("rows.json") as? [[String: Any]])
        var checked = 0
        for testCase in cases {
            let name = testCase["name"] as? String ?? "?"
            let rows = testCase["B"] as? Int ?? 0, cols = testCase["T"] as? Int ?? 0
            let train = (testCase["lt"] as? [[Any]] ?? []).flatMap { $0.map { Float(number($0)) } }
            let roll = (testCase["lr"] as? [[Any]] ?? []).flatMap { $0.map { Float(number($0)) } }
            let mask = (testCase["mask"] as? [[Any]] ?? []).flatMap { $0.map { UInt8(number($0)) } }
            let options = ReductionOptions(nanPolicy: policyNames[testCase["nan_policy"] as? String ?? ""] ?? .reject,
                                           clamp: Double("\(testCase["clamp"] ?? "inf")") ?? .infinity)
            let expected = try XCTUnwrap(testCase["expected"] as? [String: Any])
            for key in ["ln_trm", "ln_trm_eps"] {
                let spec = try XCTUnwrap(expected[key] as? [String: Any])
                let eps = (spec["eps"] as? String) == "none" ? 0 : number(spec["eps"] as Any)
                let criterion = Criterion(.lnTRM, .tv, klMax: number(spec["kl_max"] as Any), eps: eps)
                let result = try TokenBatch.withPadded(logpTrain: train, logpRoll: roll, rows: rows, cols: cols, mask: mask) {
                    (batch) throws(TRMaskError) in try trustRegionMask(batch, criteria: [criterion], options: options)
                }
                let stats = (spec["stat"] as? [Any] ?? []).map { ($0 as? String) == "kept_z0" ? 0 : number($0) }
                for (row, want) in stats.enumerated() {
                    assertClose(result.rowStats[0][row], want, tolerance: 6e-6 * abs(want) + 1e-30, "\(name) \(key) row \(row)")
                    XCTAssertEqual(result.keepRow[row], !want.isNaN, "\(name) \(key) row \(row)")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 100)
    }

    func testSERIsTheMeanOfTV() throws {
        let (train, roll) = Self.batch(rows: 5, cols: 40)
        let result = try TokenBatch.withPadded(logpTrain: train, logpRoll: roll, rows: 5, cols: 40) { (batch) throws(TRMaskError) in
            try trustRegionMask(batch, criteria: [Criterion(.ser, .tv, hi: 0.05), Criterion(.mean, .tv)])
        }
        XCTAssertEqual(result.rowStats[0], result.rowStats[1])
    }

    func testSequenceWeightsAndMetricsInTheMaskPass() throws {
        let rows = 6, cols = 30
        var (train, roll) = Self.batch(rows: rows, cols: cols)
        train[2 * cols + 5] = roll[2 * cols + 5] + 2  // row 2 leaves the trust region
        train[4 * cols + 1] = .nan  // row 4 has a NaN: rejected, weights 0
        var mask = [UInt8](repeating: 1, count: rows * cols)
        for t in 20..<cols { mask[cols + t] = 0 }
        let rule = WeightRule(level: .sequence, mode: .truncate, hi: 1.02)
        let (result, alone) = try TokenBatch.withPadded(logpTrain: train, logpRoll: roll, rows: rows, cols: cols, mask: mask) {
            (batch) throws(TRMaskError) in
            let result = try trustRegionMask(batch, keepToken: true, weights: rule, metrics: true)
            return (result, try importanceWeights(batch, rule: rule, keepRow: result.keepRow))
        }
        XCTAssertEqual(result.keepRow, [true, true, false, true, false, true])
        XCTAssertEqual(result.weights, alone, "the mask's pass and the standalone weights agree bit for bit")
        for row in 0..<rows {
            var sum = 0.0, magnitude = 0.0
            for t in 0..<cols where mask[row * cols + t] != 0 {
                let d = Double(train[row * cols + t] - roll[row * cols + t])
                sum += d
                magnitude += abs(d)
            }
            let want = result.keepRow[row] ? min(exp(sum), 1.02) : 0
            let tolerance = want * (expm1(2e-6 * magnitude) + 1.2e-7)
            for t in 0..<cols {
                let got = Double(result.weights[row * cols + t])
                XCTAssertEqual(got, mask[row * cols + t] != 0 ? want : 0, accuracy: tolerance, "row \(row) token \(t)")
                XCTAssertLessThanOrEqual(got, 1.02)
            }
        }
        let metrics = try XCTUnwrap(result.metrics)
        XCTAssertEqual(metrics.rows, rows)
        XCTAssertEqual(metrics.tokens, rows * cols - 10)
        XCTAssertEqual(metrics.keptRows, result.keepRow.filter { $0 }.count)
        XCTAssertEqual(metrics.keptTokens, result.keepToken.filter { $0 }.count)
        XCTAssertEqual(metrics.maskedRowFraction, 2.0 / 6.0)
        XCTAssertEqual(metrics.maxLength, cols)
        XCTAssertTrue(metrics.klK3.isNaN, "a NaN under the reject policy makes the means NaN")
    }

    func testMetricsMeansWithoutNaN() throws {
        let (train, roll) = Self.batch(rows: 4, cols: 50)
        let result = try TokenBatch.withPadded(logpTrain: train, logpRoll: roll, rows: 4, cols: 50) { (batch) throws(TRMaskError) in
            try trustRegionMask(batch, metrics: true)
        }
        let metrics = try XCTUnwrap(result.metrics)
        let deltas = zip(train, roll).map { Double($0 - $1) }
        let k3 = deltas.map { expm1($0) - $0 }
        XCTAssertEqual(metrics.klK1, -deltas.reduce(0, +) / 200, accuracy: 2e-6 * deltas.map(abs).reduce(0, +) / 200)
        XCTAssertEqual(metrics.klK3, k3.reduce(0, +) / 200, accuracy: 6e-6 * k3.reduce(0, +) / 200)
        XCTAssertEqual(metrics.tokenMean[Int(Estimator.k3.rawValue)], metrics.klK3)
        XCTAssertEqual(metrics.rowMax[0], Double(result.rowStats[0].max()!))
        XCTAssertEqual(metrics.pluginKLMax, metrics.rowMax[0])
        XCTAssertTrue(metrics.tokenMean[Int(Estimator.ratio.rawValue)].isNaN, "no criterion uses ratio")
    }

    func testRefusals() throws {
        let (train, roll) = Self.batch(rows: 2, cols: 8)
        func refusal(_ body: (TokenBatch) throws(TRMaskError) -> Void) -> TRMaskError? {
            do {
                try TokenBatch.withPadded(logpTrain: train, logpRoll: roll, rows: 2, cols: 8) { (batch) throws(TRMaskError) in try body(batch) }
                return nil
            } catch {
                return error
            }
        }
        XCTAssertEqual(refusal { (b) throws(TRMaskError) in _ = try trustRegionMask(b, criteria: [Criterion(.lnTRM, .tv, hi: 0.1)]) }?.status,
                       .badLengthNeutral)
        XCTAssertEqual(refusal { (b) throws(TRMaskError) in _ = try trustRegionMask(b, criteria: [Criterion(.max, .k2, klMax: 0.1)]) }?.status,
                       .badLengthNeutral)
        XCTAssertEqual(refusal { (b) throws(TRMaskError) in _ = try trustRegionMask(b, criteria: [Criterion(.ser, .k3, hi: 0.1)]) }?.status,
                       .badEstimator)
        for rule in [WeightRule(level: .token, mode: .truncate, hi: 0), WeightRule(level: .token, mode: .truncate, lo: 0.5, hi: 2),
                     WeightRule(level: .geometric, mode: .clip, lo: 2, hi: 1), WeightRule(level: .sequence, mode: .mask, lo: .nan)] {
            XCTAssertEqual(refusal { (b) throws(TRMaskError) in _ = try importanceWeights(b, rule: rule) },
                           TRMaskError(.badWeightRule, argument: "rule"))
            XCTAssertEqual(refusal { (b) throws(TRMaskError) in _ = try trustRegionMask(b, weights: rule) }?.status, .badWeightRule)
        }
        XCTAssertEqual(refusal { (b) throws(TRMaskError) in
            _ = try importanceWeights(b, rule: WeightRule(level: .token, mode: .clip, hi: 2), keepRow: [true])
        }, TRMaskError(.badSize, argument: "keepRow"))
    }

    /// Log-probs with a small, deterministic mismatch.
    static func batch(rows: Int, cols: Int) -> ([Float], [Float]) {
        let roll = (0..<(rows * cols)).map { -1 - Float($0 % 17) / 10 }
        let train = roll.enumerated().map { $1 + 0.01 * Float(($0 * 7) % 11 - 5) / 5 }
        return (train, roll)
    }
}
