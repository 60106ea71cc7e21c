// The Swift API on the 2026 rules (docs/rules-2026.md) against Tests/vectors/rules2026.json:
// binary estimators (tolerances of SPEC §4.7: bdiff 2e-7 absolute, bkl* 1e-5 relative + 1e-12),
// geometric bands and the advantage rules (exact decisions), group advantages (float32 of the
// float64 value: within one float32 rounding).

import Foundation
import TRMask
import XCTest

/// The vector entries that contradict SPEC §4.7 (python/tests/test_rules2026.py explains them).
private let contradictingSpec: Set<String> = ["eps_0/bkl/11", "eps_0/bkl_tr/10", "eps_0/bkl_tr/48", "eps_0/bkl_tr/110", "eps_0/bkl_tr/158"]

final class Rules2026APITests: XCTestCase {
    private func table() throws -> [String: Any] { try XCTUnwrap(loadVectors("rules2026.json") as? [String: Any]) }

    func testBinaryEstimatorsMatchVectors() throws {
        let binary = try XCTUnwrap(try table()["binary"] as? [String: Any])
        let lt = numbers(binary["lt"]).map { Float($0) }, lr = numbers(binary["lr"]).map { Float($0) }
        let names: [String: Estimator] = ["bdiff": .bdiff, "btv": .btv, "bkl": .bkl, "bkl_tr": .bklTR, "bkl_sym": .bklSym]
        for (case_, eps) in [("eps_1e-6", 1e-6), ("eps_0", 0.0)] {
            let expectedTable = try XCTUnwrap(binary[case_] as? [String: Any])
            for (name, estimator) in names {
                let got = try TokenBatch.withPadded(logpTrain: lt, logpRoll: lr, rows: 1, cols: lt.count) { (batch) throws(TRMaskError) in
                    try tokenValues(batch, estimator: estimator, options: ReductionOptions(binaryEps: eps))
                }
                for (index, expected) in numbers(expectedTable[name]).enumerated() where !contradictingSpec.contains("\(case_)/\(name)/\(index)") {
                    let tolerance = estimator == .bdiff || estimator == .btv ? 2e-7 : 1e-5 * abs(expected) + 1e-12
                    assertClose(got[index], expected, tolerance: tolerance, "\(name) \(case_) [\(index)]")
                }
            }
        }
    }

    func testBinaryEstimatorsRefuseALogRatio() throws {
        let delta: [Float] = [0, 0.1]
        let offsets: [Int64] = [0, 2]
        XCTAssertThrowsError(try delta.withUnsafeBufferPointer { (d) throws(TRMaskError) in
            try offsets.withUnsafeBufferPointer { (o) throws(TRMaskError) in
                _ = try tokenValues(.packed(logRatio: d, offsets: o), estimator: .bklSym)
            }
        }) { error in XCTAssertEqual((error as? TRMaskError)?.status, .needsLogProbs) }
    }

    private func geoBatch<R>(_ body: (TokenBatch, [String: Any]) throws -> R) throws -> R {
        let geo = try XCTUnwrap(try table()["geo"] as? [String: Any])
        let rows = try XCTUnwrap(geo["B"] as? Int), cols = try XCTUnwrap(geo["T"] as? Int)
        let lt = numbers(geo["lt"]).map { Float($0) }, lr = numbers(geo["lr"]).map { Float($0) }
        let mask = numbers(geo["mask"]).map { UInt8($0) }
        return try TokenBatch.withPadded(logpTrain: lt, logpRoll: lr, rows: rows, cols: cols, mask: mask) { (batch) throws(TRMaskError) in
            do { return try body(batch, geo) } catch let error as TRMaskError { throw error } catch { throw TRMaskError(.internalError) }
        }
    }

    func testGeometricBandsMatchVectors() throws {
        try geoBatch { batch, geo in
            for band in try XCTUnwrap(geo["bands"] as? [[String: Any]]) {
                let lo = number(band["lo"] as Any), hi = number(band["hi"] as Any)
                let result = try trustRegionMask(batch, criteria: [Criterion(.geo, .ratio, lo: lo, hi: hi)])
                XCTAssertEqual(result.keepRow, numbers(band["keep"]).map { $0 != 0 }, "geo [\(lo), \(hi)]")
                XCTAssertEqual(result.rowStats[0], numbers(geo["log_mean"]).map { Float($0) })
            }
        }
    }

    func testOffPolicySequenceMaskMatchesVectors() throws {
        try geoBatch { batch, geo in
            let advantages = numbers(geo["row_adv"])
            for case_ in try XCTUnwrap(geo["opsm"] as? [[String: Any]]) {
                let rule = AdvantageRule(sequenceLimit: number(case_["delta_max"] as Any))
                let result = try advantageMask(batch, advantages: advantages, rule: rule)
                let expected = numbers(case_["keep"]).map { $0 != 0 }
                XCTAssertEqual(result.keepRow, expected)
                XCTAssertEqual(result.rowsRejected, expected.filter { !$0 }.count)
            }
        }
    }

    func testAdvantageTokenRuleMatchesVectors() throws {
        let dppo = try XCTUnwrap(try table()["dppo"] as? [String: Any])
        let lt = numbers(dppo["lt"]).map { Float($0) }, lr = numbers(dppo["lr"]).map { Float($0) }
        let advantages = numbers(dppo["adv"])
        let kinds: [String: AdvantageStatistic] = ["tv": .bdiff, "kl": .bkl, "ratio": .ratio]
        for case_ in try XCTUnwrap(dppo["cases"] as? [[String: Any]]) {
            let rule = AdvantageRule(statistic: try XCTUnwrap(kinds[case_["kind"] as? String ?? ""]),
                                     zeroAdvantage: case_["zero_adv"] as? String == "keep" ? .keep : .lower,
                                     low: number(case_["low"] as Any), high: number(case_["high"] as Any))
            let result = try TokenBatch.withPadded(logpTrain: lt, logpRoll: lr, rows: 1, cols: lt.count) { (batch) throws(TRMaskError) in
                try advantageMask(batch, advantages: advantages, rule: rule)
            }
            XCTAssertEqual(result.keepToken, numbers(case_["keep"]).map { $0 != 0 }, "\(case_["kind"] ?? "") \(rule)")
        }
    }

    func testGroupAdvantagesMatchVectors() throws {
        let groups = try XCTUnwrap(try table()["groups"] as? [String: Any])
        let ids = numbers(groups["group"]).map { Int64($0) }
        let rewards = numbers(groups["reward"]), keep = numbers(groups["keep"]).map { $0 != 0 }
        for case_ in try XCTUnwrap(groups["cases"] as? [[String: Any]]) {
            let result = try groupAdvantages(groupIDs: ids, rewards: rewards, keep: keep,
                                             normalizeStd: case_["normalize_std"] as? Bool ?? true, eps: number(case_["eps"] as Any),
                                             singleton: case_["singleton"] as? String == "raw" ? .raw : .zero)
            XCTAssertEqual(result.advantages, numbers(case_["advantages"]).map { Float($0) })
            XCTAssertEqual(result.summary.rowsNonfiniteReward, Int(number(case_["n_rows_nonfinite_reward"] as Any)))
        }
        XCTAssertThrowsError(try groupAdvantages(groupIDs: [1, 2], rewards: [1])) { error in
            XCTAssertEqual(error as? TRMaskError, TRMaskError(.badSize, argument: "rewards"))
        }
    }
}
