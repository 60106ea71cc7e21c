// Tests of the error-bound calculator (SPEC §7): known answers, closed forms against brute-force
// summation, huge T, validation, reward-range scaling, the dbar path.
//
// Tolerances: 1e-12 relative against bounds.json and brute force (sums of up to 1e5 rounded
// terms; the implementation is a few ulps); 2e-14 for `sqrtRangeSum` alone (pairwise brute force
// has O(log n) ulps); 1e-13 for the 1e7-term compensated dbar path.

import Foundation
import XCTest

@testable import TRMaskKernels

final class BoundsTests: XCTestCase {
    // MARK: helpers

    private static let keys = [
        "classical_tv", "classical_kl", "coupling", "pm_kl", "pm_tv", "mixed_kl", "mixed_tv",
        "linear", "adaptive", "unified",
    ]

    private static func field(_ b: Bounds, _ key: String) -> Double {
        switch key {
        case "classical_tv": return b.classicalTV
        case "classical_kl": return b.classicalKL
        case "coupling": return b.coupling
        case "pm_kl": return b.pmKL
        case "pm_tv": return b.pmTV
        case "mixed_kl": return b.mixedKL
        case "mixed_tv": return b.mixedTV
        case "linear": return b.linear
        case "adaptive": return b.adaptive
        case "unified": return b.unified
        default: return .nan
        }
    }

    private static func relativeError(_ got: Double, _ want: Double) -> Double {
        if got == want { return 0 }
        if want == 0 { return got.magnitude }
        return (got - want).magnitude / want.magnitude
    }

    private func bounds(_ inputs: BoundInputs, file: StaticString = #filePath, line: UInt = #line)
        -> Bounds?
    {
        switch errorBounds(inputs) {
        case .success(let b): return b
        case .failure(let e):
            XCTFail("unexpected \(e) for \(inputs)", file: file, line: line)
            return nil
        }
    }

    /// Pairwise summation of `term(i)` for `i` in `lo..<hi`: an independent summation algorithm
    /// (the implementation uses closed forms and Neumaier), error O(log n) ulps.
    private static func pairwise(_ lo: Int64, _ hi: Int64, _ term: (Int64) -> Double) -> Double {
        if hi - lo <= 16 {
            var s = 0.0
            var i = lo
            while i < hi {
                s += term(i)
                i += 1
            }
            return s
        }
        let mid = lo + (hi - lo) / 2
        return pairwise(lo, mid, term) + pairwise(mid, hi, term)
    }

    /// SPEC §7 sums term by term over t = 1..T (no dbar: Dbar_t = eps), without the prefactors.
    private static func bruteCouplingSum(T: Int64, eps: Double) -> Double {
        pairwise(1, T + 1) { t in Swift.min(1, Double(t - 1) * eps) }
    }

    private static func brutePinskerSum(T: Int64, delta: Double) -> Double {
        pairwise(1, T + 1) { t in Swift.min(1, (Double(t - 1) * delta / 2).squareRoot()) }
    }

    private static func bruteAdaptiveSum(T: Int64, delta: Double, eps: Double) -> Double {
        pairwise(1, T + 1) { t in
            let k = Double(T - t)
            return eps * Swift.min(1, Swift.min(k * eps, (k * delta / 2).squareRoot()))
        }
    }

    /// sum_{k=1}^{n} sqrt(k) from its asymptotic expansion with the zeta(-1/2) constant: an
    /// independent check of the Euler–Maclaurin range sum (~1e-16 relative for n >= 1e4).
    private static func zetaPrefixSqrtSum(_ n: Double) -> Double {
        let zetaMinusHalf = -0.2078862250773080
        let r = n.squareRoot()
        return (2.0 / 3.0) * n * r + 0.5 * r + zetaMinusHalf + 1 / (24 * r)
            - 1 / (1920 * n * n * r)
    }

    // MARK: known answers

    func testVectorsFile() throws {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("vectors/bounds.json")
        let data = try Data(contentsOf: url)
        let cases = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        XCTAssertEqual(cases.count, 8)
        var worst = 0.0
        for (index, c) in cases.enumerated() {
            let T = try XCTUnwrap((c["T"] as? NSNumber)?.int64Value)
            let delta = try XCTUnwrap((c["delta"] as? NSNumber)?.doubleValue)
            let klSeq = try XCTUnwrap((c["kl_seq"] as? NSNumber)?.doubleValue)
            let eps = (c["eps"] as? NSNumber)?.doubleValue  // "derived" -> nil
            let tvSeq = (c["tv_seq"] as? NSNumber)?.doubleValue
            if eps == nil { XCTAssertEqual(c["eps"] as? String, "derived") }
            if tvSeq == nil { XCTAssertEqual(c["tv_seq"] as? String, "derived") }
            let expected = try XCTUnwrap(c["expected"] as? [String: NSNumber])
            let got = try XCTUnwrap(
                bounds(BoundInputs(T: T, klMax: delta, klSeq: klSeq, eps: eps, tvSeq: tvSeq)))
            for key in Self.keys {
                let want = try XCTUnwrap(expected[key]).doubleValue
                let err = Self.relativeError(Self.field(got, key), want)
                worst = Swift.max(worst, err)
                XCTAssertLessThanOrEqual(
                    err, 1e-12, "case \(index) \(key): got \(Self.field(got, key)), want \(want)")
            }
        }
        print("errorBounds vs bounds.json: worst relative error \(worst)")
    }

    func testSpecTable() throws {
        // SPEC §7, T = 4096, delta = 1e-4, kl_seq = 0.01, at the printed precision.
        let printed: [(String, Double, Double, Double)] = [  // key, KL-only, KL+TV, half-unit
            ("classical_kl", 1677.312, 1677.312, 5e-4), ("coupling", 113.8382, 79.910, 5e-5),
            ("pm_kl", 34.94609, 34.94609, 5e-6), ("pm_tv", 34.94609, 24.71062, 5e-6),
            ("mixed_kl", 8.192, 8.192, 5e-4), ("mixed_tv", 8.192, 4.096, 5e-4),
            ("linear", 115.8524, 81.920, 5e-5), ("adaptive", 34.94609, 24.71058, 5e-6),
            ("unified", 8.192, 4.096, 5e-4),
        ]
        let klOnly = try XCTUnwrap(bounds(BoundInputs(T: 4096, klMax: 1e-4, klSeq: 0.01)))
        let klTV = try XCTUnwrap(
            bounds(BoundInputs(T: 4096, klMax: 1e-4, klSeq: 0.01, eps: 5e-3, tvSeq: 0.05)))
        for (key, a, b, tol) in printed {
            XCTAssertEqual(Self.field(klOnly, key), a, accuracy: tol, key)
            XCTAssertEqual(Self.field(klTV, key), b, accuracy: tol, key)
        }
        XCTAssertEqual(klOnly.classicalTV, 1677.312, accuracy: 5e-4)
        XCTAssertEqual(klTV.classicalTV, 838.656, accuracy: 5e-4)
        // Large regime: delta = 1, kl_seq = 1, KL-only.
        let large = try XCTUnwrap(bounds(BoundInputs(T: 4096, klMax: 1, klSeq: 1)))
        XCTAssertEqual(large.classicalKL, 16_773_120, accuracy: 0.5)
        XCTAssertEqual(large.pmKL, 11581.58, accuracy: 5e-3)
        XCTAssertEqual(large.mixedKL, 8192, accuracy: 0.5)
        XCTAssertEqual(large.linear, 11585.24, accuracy: 5e-3)
        // The paper's (4/3) T^1.5 delta = 34.95 is PM-KL's closed-form upper bound, not its value.
        XCTAssertLessThan(klOnly.pmKL, 4.0 / 3.0 * 262_144 * 1e-4)
    }

    // MARK: closed forms against brute force

    func testSqrtRangeSumAgainstBruteForce() {
        let ranges: [(Int64, Int64)] = [
            (0, 0), (1, 1), (0, 1), (0, 1023), (0, 1024), (1, 1025), (1023, 1024), (1024, 1024),
            (1024, 1025), (0, 5000), (5000, 5003), (77, 100_000), (1_000_000, 1_000_007),
            (1, 2_000_000), (999_999, 1_500_000),
        ]
        for (a, b) in ranges {
            let want = Self.pairwise(a, b + 1) { k in Double(k).squareRoot() }
            let got = sqrtRangeSum(from: a, through: b)
            XCTAssertLessThanOrEqual(Self.relativeError(got, want), 2e-14, "[\(a), \(b)]")
        }
        XCTAssertEqual(sqrtRangeSum(from: 5, through: 4), 0)
        for n: Int64 in [10_000, 123_457, 10_000_000, 1_000_000_000, 1_000_000_000_000] {
            let got = sqrtRangeSum(from: 1, through: n)
            let want = Self.zetaPrefixSqrtSum(Double(n))
            XCTAssertLessThanOrEqual(Self.relativeError(got, want), 1e-14, "n = \(n)")
        }
    }

    func testClosedFormsAgainstBruteForceSweep() throws {
        let lengths: [Int64] = [1, 2, 3, 10, 1000, 100_000]
        var worst = 0.0
        for T in lengths {
            // The full grid below T = 1e5; at 1e5 a subset keeps the debug-build test short.
            let full = T <= 1000
            // Deltas from the brief plus values putting the sqrt cap (k delta/2 >= 1) on an
            // integer k, and their floating-point neighbours.
            var deltas: [Double] = [0, 1e-8, 1e-4, 0.1, 1, 2.5, 10]
            let deltaCaps: Set<Int64> =
                full ? [1, 2, 3, 7, Swift.max(1, T / 2), Swift.max(1, T - 1)] : [3, T - 1]
            for j in deltaCaps {
                let d = 2 / Double(j)
                deltas += [d.nextDown, d, d.nextUp]
            }
            // eps: the Pinsker default (nil), fixed values, and values putting the linear cap
            // (k eps >= 1) or the linear/sqrt crossover on an integer k, with neighbours.
            var epsValues: [Double?] = full ? [nil, 0, 1e-9, 1e-3, 0.5, 1, 3] : [nil, 0, 1e-3, 1]
            let epsCaps: Set<Int64> =
                full ? [1, 2, 3, 9, Swift.max(1, T / 3), Swift.max(1, T - 1)] : [9, T - 1]
            for j in epsCaps {
                let e = 1 / Double(j)
                epsValues += [e.nextDown, e, e.nextUp]
            }
            var couplingSums: [Double: Double] = [:]
            for delta in deltas {
                let pinskerSum = Self.brutePinskerSum(T: T, delta: delta)
                var perDelta = epsValues
                if delta > 0 {  // crossover k = delta / (2 eps^2) at k = 4 and k = T / 4
                    for k in [4.0, Swift.max(1, Double(T) / 4)] {
                        let e = (delta / (2 * k)).squareRoot()
                        perDelta += [e.nextDown, e, e.nextUp]
                    }
                }
                for eps in perDelta {
                    let got = try XCTUnwrap(
                        bounds(BoundInputs(T: T, klMax: delta, klSeq: 0.3, eps: eps)))
                    let e = eps ?? (delta / 2).squareRoot()
                    let couplingSum: Double
                    if let cached = couplingSums[e] {
                        couplingSum = cached
                    } else {
                        couplingSum = Self.bruteCouplingSum(T: T, eps: e)
                        couplingSums[e] = couplingSum
                    }
                    let capEps = Swift.min(1, e)
                    let capPinsker = Swift.min(1, (delta / 2).squareRoot())
                    for (name, g, w) in [
                        ("coupling", got.coupling, 4 * capEps * couplingSum),
                        ("pmKL", got.pmKL, 4 * capPinsker * pinskerSum),
                        ("pmTV", got.pmTV, 4 * capEps * pinskerSum),
                        (
                            "adaptive", got.adaptive,
                            4 * Self.bruteAdaptiveSum(T: T, delta: delta, eps: e)
                        ),
                    ] {
                        let err = Self.relativeError(g, w)
                        worst = Swift.max(worst, err)
                        XCTAssertLessThanOrEqual(
                            err, 1e-12, "\(name) T=\(T) delta=\(delta) eps=\(e): \(g) vs \(w)")
                    }
                    XCTAssertEqual(got.linear, 4 * Double(T) * e)
                    XCTAssertEqual(got.classicalKL, Double(T) * Double(T - 1) * delta)
                }
            }
        }
        print("closed forms vs brute force: worst relative error \(worst)")
    }

    // MARK: huge T

    func testHugeTIsInstantAndSensible() throws {
        let clock = ContinuousClock()
        let start = clock.now
        var results: [Bounds] = []
        for (delta, eps) in [(1e-4, nil), (1e-4, 5e-3), (1.0, nil), (1e-12, nil), (0.0, nil)]
            as [(Double, Double?)]
        {
            results.append(
                try XCTUnwrap(
                    bounds(BoundInputs(T: 1_000_000_000, klMax: delta, klSeq: 0.01, eps: eps))))
        }
        let elapsed = clock.now - start
        print("T = 10^9, 5 calls: \(elapsed)")
        XCTAssertLessThan(elapsed, .milliseconds(100))
        let T = 1e9
        for b in results {
            for key in Self.keys {
                let v = Self.field(b, key)
                XCTAssertTrue(v.isFinite && v >= 0, "\(key) = \(v)")
            }
            XCTAssertLessThanOrEqual(b.coupling, 4 * T)
            XCTAssertLessThanOrEqual(b.pmKL, 4 * T)
            XCTAssertLessThanOrEqual(b.unified, b.pmKL)
            XCTAssertLessThanOrEqual(b.unified, b.mixedTV)
        }
        // delta = 1e-4: caps at k = 20000 (sqrt) and k = 142 (eps = sqrt(5e-5)), so every sum is
        // T minus a small correction.
        let small = results[0]
        let e = (5e-5).squareRoot()
        XCTAssertEqual(small.pmKL / (4 * e * T), 1, accuracy: 1e-4)
        XCTAssertLessThan(small.pmKL, 4 * e * T)
        // delta = 1e-12: the sqrt cap (k >= 2e12) is not reached below T = 1e9, so PM-KL is
        // 4 c sum_{k=1}^{T-1} sqrt(k) with c = delta/2, checked with the zeta expansion.
        let c = 0.5e-12
        let wantPM = 4 * c * Self.zetaPrefixSqrtSum(T - 1)
        XCTAssertLessThanOrEqual(Self.relativeError(results[3].pmKL, wantPM), 1e-13)
        XCTAssertLessThan(results[3].pmKL, 4.0 / 3.0 * T * T.squareRoot() * 1e-12)
        // Coupling: eps = sqrt(c) ~ 7.1e-7 caps at k ~ 1/eps ~ 1.4e6, so the sum is
        // T - 1/(2 eps) up to O(1): 4 eps (T - 1/(2 eps)) to ~1e-9 relative.
        let e12 = c.squareRoot()
        XCTAssertLessThanOrEqual(
            Self.relativeError(results[3].coupling, 4 * e12 * (T - 1 / (2 * e12))), 1e-8)
        // delta = 0 with the Pinsker eps: every bound is 0.
        for key in Self.keys { XCTAssertEqual(Self.field(results[4], key), 0, key) }
    }

    func testExtremeInputsNeverNaN() throws {
        let big = Double.greatestFiniteMagnitude
        let tiny = Double.leastNonzeroMagnitude
        let inputs: [BoundInputs] = [
            BoundInputs(T: .max, klMax: big, klSeq: big, eps: big, tvSeq: big, rewardRange: big),
            BoundInputs(T: 1, klMax: big, klSeq: big, eps: big, tvSeq: big, rewardRange: big),
            BoundInputs(
                T: .max, klMax: tiny, klSeq: tiny, eps: tiny, tvSeq: tiny, rewardRange: tiny),
            BoundInputs(T: .max, klMax: 1e-300, klSeq: 0, eps: 1e-170),
            BoundInputs(T: .max, klMax: 1e-3, klSeq: 0.1),
            BoundInputs(T: 3, klMax: 0, klSeq: 0, eps: big),
        ]
        for input in inputs {
            let b = try XCTUnwrap(bounds(input))
            for key in Self.keys {
                let v = Self.field(b, key)
                XCTAssertFalse(v.isNaN, "\(key) for \(input)")
                XCTAssertGreaterThanOrEqual(v, 0, "\(key) for \(input)")
            }
        }
        // T = 1 has no pairs: the classical bounds are 0 even for eps = greatestFiniteMagnitude.
        let one = try XCTUnwrap(bounds(inputs[1]))
        XCTAssertEqual(one.classicalTV, 0)
        XCTAssertEqual(one.classicalKL, 0)
    }

    // MARK: validation

    func testEveryInputError() {
        let ok = [Double](repeating: 0.01, count: 4)
        ok.withUnsafeBufferPointer { good in
            let base = BoundInputs(T: 4, klMax: 0.01, klSeq: 0.1, dbar: good)
            XCTAssertNotNil(try? errorBounds(base).get())
            func expect(_ error: BoundsInputError, _ change: (inout BoundInputs) -> Void,
                        line: UInt = #line)
            {
                var input = base
                change(&input)
                XCTAssertEqual(errorBounds(input), .failure(error), line: line)
            }
            for bad: Int64 in [0, -1, .min] { expect(.badLength) { $0.T = bad } }
            for bad in [-1e-300, .nan, .infinity, -.infinity, -1.0] {
                expect(.badKLMax) { $0.klMax = bad }
                expect(.badKLSeq) { $0.klSeq = bad }
                expect(.badEps) { $0.eps = bad }
                expect(.badTVSeq) { $0.tvSeq = bad }
                expect(.badRewardRange) { $0.rewardRange = bad }
            }
            expect(.badRewardRange) { $0.rewardRange = 0 }
            expect(.badDbar) { $0.T = 5 }
            expect(.badDbar) { $0.T = 3 }
        }
        for bad in [Double.nan, .infinity, -.infinity, -1e-9] {
            for position in 0..<4 {
                var values = [Double](repeating: 0.01, count: 4)
                values[position] = bad
                values.withUnsafeBufferPointer { dbar in
                    XCTAssertEqual(
                        errorBounds(BoundInputs(T: 4, klMax: 0.01, klSeq: 0.1, dbar: dbar)),
                        .failure(.badDbar))
                }
            }
        }
        // Zero divergences and eps = 0 are valid.
        let zeros = BoundInputs(T: 4, klMax: 0, klSeq: 0, eps: 0, tvSeq: 0)
        XCTAssertNotNil(try? errorBounds(zeros).get())
    }

    // MARK: reward range, dbar

    func testRewardRangeScalesEveryBound() throws {
        let base = try XCTUnwrap(bounds(BoundInputs(T: 300, klMax: 0.01, klSeq: 0.2, eps: 0.03)))
        let scaled = try XCTUnwrap(
            bounds(BoundInputs(T: 300, klMax: 0.01, klSeq: 0.2, eps: 0.03, rewardRange: 2.5)))
        for key in Self.keys {
            XCTAssertLessThanOrEqual(
                Self.relativeError(Self.field(scaled, key), 2.5 * Self.field(base, key)), 1e-15,
                key)
        }
    }

    func testDbarEqualToEpsMatchesClosedForms() throws {
        let cases: [(Int64, Double, Double?)] = [
            (1, 0.1, nil), (2, 1e-3, nil), (1000, 1e-4, 5e-3), (1000, 2.5, nil),
            (100_000, 1e-6, nil), (100_000, 1e-4, 2e-4), (100_000, 0.02, 0.08),
        ]
        for (T, delta, eps) in cases {
            try checkDbarAgainstClosedForm(T: T, delta: delta, eps: eps, tolerance: 1e-12)
        }
    }

    func testDbarTenMillionTermsKeepsAccuracy() throws {
        try checkDbarAgainstClosedForm(T: 10_000_000, delta: 1e-8, eps: nil, tolerance: 1e-13)
    }

    private func checkDbarAgainstClosedForm(
        T: Int64, delta: Double, eps: Double?, tolerance: Double
    ) throws {
        let e = eps ?? (delta / 2).squareRoot()
        let closed = try XCTUnwrap(bounds(BoundInputs(T: T, klMax: delta, klSeq: 0.01, eps: eps)))
        let values = [Double](repeating: e, count: Int(T))
        let viaDbar = try values.withUnsafeBufferPointer { dbar in
            try XCTUnwrap(
                bounds(BoundInputs(T: T, klMax: delta, klSeq: 0.01, eps: eps, dbar: dbar)))
        }
        for key in Self.keys {
            XCTAssertLessThanOrEqual(
                Self.relativeError(Self.field(viaDbar, key), Self.field(closed, key)), tolerance,
                "\(key) T=\(T) delta=\(delta)")
        }
    }

    func testDbarPathAgainstBruteForce() throws {
        let T: Int64 = 5000
        let delta = 0.003
        let eps = 0.02
        // Deterministic non-constant profile in [0, 0.05].
        let values = (0..<Int(T)).map { i in 0.05 * Double((i * 7919) % 1000) / 1000 }
        let got = try values.withUnsafeBufferPointer { dbar in
            try XCTUnwrap(bounds(BoundInputs(T: T, klMax: delta, klSeq: 0.2, eps: eps, dbar: dbar)))
        }
        let linear = 4 * Self.pairwise(0, T) { i in values[Int(i)] }
        let adaptive = 4 * Self.pairwise(1, T + 1) { t in
            let k = Double(T - t)
            let weight = Swift.min(1, Swift.min(k * eps, (k * delta / 2).squareRoot()))
            return values[Int(t - 1)] * weight
        }
        XCTAssertLessThanOrEqual(Self.relativeError(got.linear, linear), 1e-13)
        XCTAssertLessThanOrEqual(Self.relativeError(got.adaptive, adaptive), 1e-13)
        // Bounds that do not use Dbar are the same as without it.
        let plain = try XCTUnwrap(bounds(BoundInputs(T: T, klMax: delta, klSeq: 0.2, eps: eps)))
        XCTAssertEqual(got.coupling, plain.coupling)
        XCTAssertEqual(got.pmKL, plain.pmKL)
        XCTAssertEqual(got.mixedTV, plain.mixedTV)
        XCTAssertEqual(
            got.unified,
            Swift.min(got.pmKL, got.pmTV, got.mixedKL, got.mixedTV, got.coupling, got.adaptive))
    }
}
