// The float32 lanes of the binary estimators (SPEC §4.7) against their float64 formulas (which
// python/tests/test_rules2026.py checks against a 60-digit decimal reference and the vectors):
// bdiff within 2e-7 absolute, bkl and bkl_tr within 1e-5 relative + 1e-12, over log-probabilities
// spread on a log scale from -80 to -1e-30 (near-certain tokens, near-equal pairs, far pairs) and
// every eps the tests use. Prints the worst errors measured.

import Foundation
import XCTest

@testable import TRMaskKernels

final class BinaryEstimatorTests: XCTestCase {
    /// Log-probabilities from -1e-30 to -80: -10^k for k on a grid, and perturbations of each.
    private func grid() -> [Float] {
        var values: [Float] = []
        var k: Float = -30
        while k <= 1.9 {
            let base = -Float.pow10(k)
            values += [base, base * (1 + 1e-3), base * (1 - 1e-6), base.nextDown, base * 1.5]
            k += 0.37
        }
        return values.filter { $0 >= -80 }
    }

    func testFloat32LanesAgainstFloat64() {
        let values = grid()
        var worst = (difference: 0.0, kl: 0.0)
        for eps in [0.0, 1e-6, 1e-3, 0.25] {
            let clamp = BinaryClamp(eps: eps)
            let (low, high) = clamp.lanes
            for (i, x) in values.enumerated() {
                // Eight partners per chunk: neighbours on the grid and a few far ones.
                let partners = (0..<8).map { values[(i + [0, 1, 2, 3, 7, 19, 41, 97][$0]) % values.count] }
                let lt = Lanes(repeating: x), lr = Lanes(partners)
                let lanes = binaryLanes(lt, lr, needs: [.difference, .forward, .backward], clamp: clamp, logLow: low, logHigh: high)
                for lane in 0..<8 {
                    let t = Double(x), r = Double(partners[lane])
                    let d = binaryDifference(t, r)
                    let errD = abs(Double(lanes.difference[lane]) - d)
                    XCTAssertLessThanOrEqual(errD, 2e-7, "bdiff \(t) \(r)")
                    worst.difference = max(worst.difference, errD)
                    for (got, estimator) in [(lanes.forward[lane], Estimator.bkl), (lanes.backward[lane], .bklTR)] {
                        let ref = binaryValue(estimator, lt: t, lr: r, clamp: clamp)
                        let err = abs(Double(got) - ref)
                        XCTAssertLessThanOrEqual(err, 1e-5 * ref + 1e-12, "\(estimator) eps \(eps) lt \(t) lr \(r)")
                        if ref > 1e-12 { worst.kl = max(worst.kl, err / ref) }
                    }
                }
            }
        }
        print("binary lanes vs float64: worst bdiff error \(worst.difference), worst bkl relative error \(worst.kl)")
    }

    func testLaneValuesDoNotDependOnNeighbours() {
        let clamp = BinaryClamp(eps: 0)
        let (low, high) = clamp.lanes
        let slow = binaryLanes(Lanes(repeating: -0.5), Lanes(0, -1, -2, -3, -4, -5, -6, -7), needs: [.forward],
                               clamp: clamp, logLow: low, logHigh: high)
        let mixed = binaryLanes(Lanes(-0.5, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5),
                                Lanes(0, -1, -2, -3, -4, -5, -6, -.infinity), needs: [.forward], clamp: clamp, logLow: low, logHigh: high)
        for lane in 1..<7 { XCTAssertEqual(slow.forward[lane], mixed.forward[lane]) }
    }

    func testFastLogWithinAFewUlps() {
        var x: Float = 1e-30
        var worst = 0.0
        while x < 1e30 {
            let got = fastLog(Lanes(repeating: x))[0]
            let ref = log(Double(x))
            let ulps = abs(Double(got) - ref) / Double(Float(ref).ulp)
            worst = max(worst, ulps)
            x *= 1.0137
        }
        XCTAssertLessThanOrEqual(worst, 4)
        print("fastLog: worst \(worst) ulp")
    }
}

private extension Float {
    static func pow10(_ k: Float) -> Float { Float(Foundation.pow(10.0, Double(k))) }
}
