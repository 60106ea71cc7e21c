// Kernel-level properties of the estimators (SPEC §2): monotone in |delta| on each side of 0,
// across the switch between the float32 series and the float64 path (every float32 in a window
// around the switch), k3 >= 0 with k3 == 0 only at 0 (until delta^2/2 underflows), the special
// values, and accuracy against a float64 evaluation on a grid. The dense grid over [-30, 30] is in
// python/tests/test_accuracy.py (it runs against the release library).

import Foundation
import XCTest

@testable import TRMaskKernels

final class EstimatorTests: XCTestCase {
    /// Per-token values of `estimator` for `deltas`, through the public kernel entry point.
    private func values(_ estimator: Estimator, _ deltas: [Float]) -> [Float] {
        var out = [Float](repeating: .nan, count: deltas.count)
        let offsets: [Int64] = [0, Int64(deltas.count)]
        let status = deltas.withUnsafeBytes { d in
            offsets.withUnsafeBytes { o in
                out.withUnsafeMutableBufferPointer { out in
                    tokenValues(Batch(layout: .packed, rows: 1, cols: deltas.count,
                                      source: .logRatio(StridedView(base: d.baseAddress, dtype: .f32)),
                                      offsets: StridedView(base: o.baseAddress, dtype: .i64)),
                                estimator: estimator, options: ReductionOptions(), out: OutView(base: out.baseAddress, rowStride: 0, colStride: 1))
                }
            }
        }
        XCTAssertEqual(status, .ok)
        return out
    }

    /// Every float32 from `start` outward (away from 0) for `count` steps.
    private func run(from start: Float, count: Int) -> [Float] {
        var x = start
        return (0..<count).map { _ in
            defer { x = x.sign == .minus ? x.nextDown : x.nextUp }
            return x
        }
    }

    func testMonotoneAcrossTheSeriesSwitch() {
        for side: Float in [1, -1] {
            var start = side * seriesLimit
            for _ in 0..<20_000 { start = side > 0 ? start.nextDown : start.nextUp }
            let deltas = run(from: start, count: 40_000)
            for estimator in [Estimator.k3, .tv, .k2, .abs] {
                let v = values(estimator, deltas)
                for i in 1..<v.count where v[i] < v[i - 1] {
                    XCTFail("\(estimator) decreases from \(v[i - 1]) at delta \(deltas[i - 1]) to \(v[i]) at \(deltas[i])")
                    break
                }
            }
            // ratio = exp(delta) is increasing in delta itself.
            let ratio = values(.ratio, deltas)
            for i in 1..<ratio.count where side * (ratio[i] - ratio[i - 1]) < 0 {
                XCTFail("ratio is not monotone at \(deltas[i])")
                break
            }
        }
    }

    func testK3IsPositiveAwayFromZero() {
        let deltas: [Float] = [1e-22, -1e-22, 1e-19, 3e-8, -3e-8, 1e-4, -0.3, 0.34, -20, 20]
        for (d, k3) in zip(deltas, values(.k3, deltas)) {
            XCTAssertGreaterThan(k3, 0, "k3(\(d))")
        }
        XCTAssertEqual(values(.k3, [0, -0.0]), [0, 0])
        // Below sqrt(2 * smallest subnormal) the exact k3 is not representable: 0 is the float32 answer.
        XCTAssertEqual(values(.k3, [1e-30]), [0])
    }

    func testSpecialValues() {
        let deltas: [Float] = [.infinity, -.infinity, .nan, 88.8, -88.8, 1e30, -1e30]
        let k3 = values(.k3, deltas), ratio = values(.ratio, deltas), tv = values(.tv, deltas)
        XCTAssertEqual(Array(k3[0...1]), [.infinity, .infinity])
        XCTAssertTrue(k3[2].isNaN && ratio[2].isNaN && tv[2].isNaN)
        XCTAssertEqual(ratio[1], 0)
        XCTAssertEqual(tv[1], 1)
        XCTAssertEqual(ratio[3], .infinity, "exp beyond float32 range is +inf")
        XCTAssertEqual(k3[3], .infinity)
        XCTAssertEqual(k3[5], .infinity)
        XCTAssertEqual(k3[6], 1e30)
        XCTAssertEqual(ratio[6], 0)
        XCTAssertEqual(values(.k2, [.infinity, -.infinity]), [.infinity, .infinity])
        XCTAssertEqual(values(.abs, [-0.0])[0].sign, .plus)
    }

    func testAccuracyOnAGrid() {
        var deltas: [Float] = []
        var x: Float = 1e-12
        while x < 80 {
            deltas += [x, -x]
            x *= 1.0009
        }
        for estimator in [Estimator.k3, .ratio, .tv] {
            var worst = 0.0
            for (d, v) in zip(deltas, values(estimator, deltas)) {
                let e = Double(d)
                let exact: Double
                switch estimator {
                case .k3: exact = abs(e) < 1e-3 ? e * e / 2 + e * e * e / 6 + e * e * e * e / 24 + pow(e, 5) / 120 : expm1(e) - e
                case .ratio: exact = exp(e)
                default: exact = abs(expm1(e))
                }
                guard exact >= Double(Float.leastNormalMagnitude), exact <= Double(Float.greatestFiniteMagnitude) else { continue }
                worst = max(worst, abs(Double(v) - exact) / exact)
            }
            XCTAssertLessThan(worst, 4e-6, "\(estimator) worst relative error \(worst)")
            XCTAssertLessThan(worst, 2.5e-7, "\(estimator): expected within about 2 ulps, got \(worst)")
        }
    }
}
