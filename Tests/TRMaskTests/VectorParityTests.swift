// The Swift API against the independent known answers in Tests/vectors (SPEC §2-§4, §10):
// every rows.json case, padded and packed, every criteria set; every estimators.json value.
//
// Tolerances (SPEC §2-§3): delta, k1, k2, abs equal float32(reference); k3, ratio, tv within
// 4e-6 relative (+ the smallest subnormal, for references that underflow float32); references
// beyond float32's range must come out infinite; sums and means within 2e-6 (plus 4e-6 for the
// exponential estimators) of sum |term| per row; counts, keep decisions and rejections exact.

import Foundation
import TRMask
import XCTest

/// JSON numbers with "nan", "inf", "-inf" strings. Foundation on Linux parses JSON numbers as
/// NSDecimalNumber, whose `doubleValue` can be off by an ulp: go through the exact decimal text.
func number(_ value: Any) -> Double {
    if let string = value as? String { return Double(string) ?? .nan }
    guard let number = value as? NSNumber else { return .nan }
    return Double(number.stringValue) ?? number.doubleValue
}

func numbers(_ value: Any?) -> [Double] { (value as? [Any] ?? []).map(number) }

func loadVectors(_ name: String) throws -> Any {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    return try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("vectors/\(name)")))
}

/// `|got - float32(expected)| <= tolerance`, with float32 overflow, NaN and infinities matched
/// exactly.
func assertClose(_ got: Float, _ expected: Double, tolerance: Double, _ what: @autoclosure () -> String,
                 file: StaticString = #filePath, line: UInt = #line) {
    let target = Double(Float(expected))  // what a float32 output can show (±inf beyond range)
    if target.isNaN { return XCTAssertTrue(got.isNaN, "\(what()): got \(got), expected NaN", file: file, line: line) }
    if target.isInfinite { return XCTAssertEqual(Double(got), target, "\(what())", file: file, line: line) }
    XCTAssertLessThanOrEqual(abs(Double(got) - target), tolerance, "\(what()): got \(got), expected \(expected)", file: file, line: line)
}

let exponential: Set<Estimator> = [.k3, .ratio, .tv]

func tokenTolerance(_ estimator: Estimator, _ expected: Double) -> Double {
    exponential.contains(estimator) ? 4e-6 * abs(expected) + 1.5e-45 : 0  // the others are correctly rounded
}

let estimatorNames: [String: Estimator] = ["delta": .delta, "k1": .k1, "k2": .k2, "k3": .k3, "abs": .abs, "ratio": .ratio, "tv": .tv, "value": .value]
let aggregationNames: [String: Aggregation] = ["max": .max, "min": .min, "sum": .sum, "mean": .mean, "token": .token]
let policyNames: [String: NaNPolicy] = ["reject": .reject, "skip": .skip, "zero": .zero]

final class VectorParityTests: XCTestCase {
    func testEstimators() throws {
        let table = try XCTUnwrap(loadVectors("estimators.json") as? [String: Any])
        let deltas = numbers(table["delta"]).map { Float($0) }
        for (clamp, values) in [(Double.infinity, table), (20.0, try XCTUnwrap(table["clamp20"] as? [String: Any]))] {
            for (name, estimator) in estimatorNames where estimator != .value {
                let expected = numbers(values[name])
                let got = try deltas.withUnsafeBufferPointer { (d) throws(TRMaskError) -> [Float] in
                    let offsets: [Int64] = [0, Int64(d.count)]
                    return try offsets.withUnsafeBufferPointer { (o) throws(TRMaskError) -> [Float] in
                        try tokenValues(.packed(logRatio: d, offsets: o), estimator: estimator, options: ReductionOptions(clamp: clamp))
                    }
                }
                for (i, (g, e)) in zip(got, expected).enumerated() {
                    assertClose(g, e, tolerance: tokenTolerance(estimator, e), "\(name) clamp \(clamp) at \(i) (delta \(deltas[i]))")
                }
            }
        }
    }

    func testRows() throws {
        let cases = try XCTUnwrap(loadVectors("rows.json") as? [[String: Any]])
        XCTAssertEqual(cases.count, 10)
        for testCase in cases { try checkCase(testCase) }
    }

    private func checkCase(_ testCase: [String: Any]) throws {
        let name = testCase["name"] as? String ?? "?"
        let rows = testCase["B"] as? Int ?? 0
        let cols = testCase["T"] as? Int ?? 0
        let logpTrain = (testCase["lt"] as? [[Any]] ?? []).flatMap { $0.map { Float(number($0)) } }
        let logpRoll = (testCase["lr"] as? [[Any]] ?? []).flatMap { $0.map { Float(number($0)) } }
        let mask = (testCase["mask"] as? [[Any]] ?? []).flatMap { $0.map { UInt8(number($0)) } }
        let clampText = "\(testCase["clamp"] ?? "inf")"
        let options = ReductionOptions(nanPolicy: policyNames[testCase["nan_policy"] as? String ?? ""] ?? .reject,
                                       clamp: Double(clampText) ?? .infinity, rejectEmpty: testCase["reject_empty"] as? Bool ?? false)
        let expected = try XCTUnwrap(testCase["expected"] as? [String: Any])
        let packed = try XCTUnwrap(testCase["packed"] as? [String: Any])
        let packedTrain = numbers(packed["lt"]).map { Float($0) }
        let packedRoll = numbers(packed["lr"]).map { Float($0) }
        let offsets = numbers(packed["offsets"]).map { Int64($0) }

        // Runs `body` on the padded batch and on the packed one.
        func both<R>(_ body: (TokenBatch, String) throws(TRMaskError) -> R) throws -> [R] {
            let padded = try TokenBatch.withPadded(logpTrain: logpTrain, logpRoll: logpRoll, rows: rows, cols: cols, mask: mask) {
                (batch) throws(TRMaskError) in try body(batch, "padded")
            }
            let packedResult = try packedTrain.withUnsafeBufferPointer { train in
                try packedRoll.withUnsafeBufferPointer { roll in
                    try offsets.withUnsafeBufferPointer { offsets in
                        try body(TokenBatch.packed(logpTrain: train, logpRoll: roll, offsets: offsets), "packed")
                    }
                }
            }
            return [padded, packedResult]
        }

        // Statistics of every estimator.
        let estimators: [Estimator] = [.delta, .k1, .k2, .k3, .abs, .ratio, .tv]
        let statsByLayout = try both { (batch, _) throws(TRMaskError) in try sequenceStats(batch, estimators: estimators, options: options) }
        let expectedStats = try XCTUnwrap(expected["stats"] as? [String: Any])
        for stats in statsByLayout {
            XCTAssertEqual(stats.count, numbers(expected["count"]).map { Int($0) }, "\(name) count")
            XCTAssertEqual(stats.nonfinite, numbers(expected["nonfinite"]).map { Int($0) }, "\(name) nonfinite")
            for estimator in estimators {
                let key = estimatorNames.first { $0.value == estimator }!.key
                let table = try XCTUnwrap(expectedStats[key] as? [String: Any])
                let got = try XCTUnwrap(stats.stats[estimator])
                for row in 0..<rows {
                    let termSum = try sumOfTerms(estimator, row: row, train: logpTrain, roll: logpRoll, mask: mask, cols: cols, options: options)
                    let rtol = 2e-6 + (exponential.contains(estimator) ? 4e-6 : 0)
                    let count = max(1, Double(stats.count[row]))
                    let sum = numbers(table["sum"])[row], mean = numbers(table["mean"])[row]
                    let maxValue = numbers(table["max"])[row], minValue = numbers(table["min"])[row]
                    assertClose(got.sum[row], sum, tolerance: rtol * termSum + 1e-30, "\(name) \(key) sum row \(row)")
                    assertClose(got.mean[row], mean, tolerance: (rtol * termSum + 1e-30) / count, "\(name) \(key) mean row \(row)")
                    assertClose(got.max[row], maxValue, tolerance: tokenTolerance(estimator, maxValue), "\(name) \(key) max row \(row)")
                    assertClose(got.min[row], minValue, tolerance: tokenTolerance(estimator, minValue), "\(name) \(key) min row \(row)")
                }
            }
        }

        // Every criteria set.
        let criteriaSets = try XCTUnwrap(testCase["criteria"] as? [String: [String: Any]])
        for (setName, set) in criteriaSets {
            let criteria = try (set["criteria"] as? [[String: Any]] ?? []).map { spec in
                Criterion(try XCTUnwrap(aggregationNames[spec["agg"] as? String ?? ""]), try XCTUnwrap(estimatorNames[spec["est"] as? String ?? ""]),
                          lo: number(spec["lo"] ?? "-inf"), hi: number(spec["hi"] ?? "inf"))
            }
            let results = try both { (batch, _) throws(TRMaskError) in try trustRegionMask(batch, criteria: criteria, options: options, keepToken: true) }
            let keepToken = (set["keep_token"] as? [[Any]] ?? []).flatMap { $0.map { number($0) != 0 } }
            for (layout, result) in zip(["padded", "packed"], results) {
                XCTAssertEqual(result.keepRow, numbers(set["keep_row"]).map { $0 != 0 }, "\(name) \(setName) \(layout) keep_row")
                XCTAssertEqual(result.rejected, numbers(set["rejected_per_criterion"]).map { Int($0) }, "\(name) \(setName) \(layout) rejected")
                let expectedTokens = layout == "padded" ? keepToken : zip(keepToken, mask).filter { $0.1 != 0 }.map(\.0)
                XCTAssertEqual(result.keepToken, expectedTokens, "\(name) \(setName) \(layout) keep_token")
            }
        }
    }

    /// sum |term| of a row for the SPEC §3 tolerance, in float64 from the float32 deltas.
    private func sumOfTerms(_ estimator: Estimator, row: Int, train: [Float], roll: [Float], mask: [UInt8], cols: Int,
                            options: ReductionOptions) throws -> Double {
        var total = 0.0
        for t in 0..<cols where mask[row * cols + t] != 0 {
            var d = Double(train[row * cols + t] - roll[row * cols + t])
            if d.isNaN { if options.nanPolicy == .zero { d = 0 } else { continue } }
            d = min(max(d, -options.clamp), options.clamp)
            let term: Double
            switch estimator {
            case .delta, .k1, .abs, .value: term = abs(d)
            case .k2: term = d * d / 2
            case .k3: term = abs(expm1(d) - d)
            case .ratio: term = exp(d)
            case .tv: term = abs(expm1(d))
            case .bdiff, .btv, .bkl, .bklTR, .bklSym: term = .nan  // not in rows.json
            }
            if term.isFinite { total += term }
        }
        return total
    }
}
