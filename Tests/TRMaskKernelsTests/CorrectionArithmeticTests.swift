// The narrow-dtype arithmetic of the rollout correction (CorrectionArithmetic.swift): the SIMD
// exp against libm over the whole input range, the bfloat16 and float16 rounding against the
// formats' definitions, and the float16 bit encoding.

import Foundation
import XCTest
@testable import TRMaskKernels

final class CorrectionArithmeticTests: XCTestCase {
    func testSIMDExpWithinTwoUlpsOfLibm() {
        var worst = 0.0
        var x = -745.0
        var disagreeingFloats = 0
        while x < 709.7 {
            let lanes = SIMD8<Double>((0..<8).map { x + Double($0) * 0.0137 })
            let got = simdExp(lanes)
            for lane in 0..<8 {
                let want = exp(lanes[lane])
                if want.isNormal { worst = max(worst, abs(got[lane] - want) / want) }
                if Float(got[lane]) != Float(want) { disagreeingFloats += 1 }
            }
            x += 0.1093
        }
        XCTAssertLessThanOrEqual(worst, 4.5e-16)  // two ulps of float64
        XCTAssertEqual(disagreeingFloats, 0)  // rounded to float32: the same result
        let special = simdExp(SIMD8(.nan, .infinity, -.infinity, 800, -800, 0, -0.0, 1))
        XCTAssertTrue(special[0].isNaN)
        XCTAssertEqual([special[1], special[2], special[3], special[4], special[5], special[6]], [.infinity, 0, .infinity, 0, 1, 1])
        XCTAssertEqual(special[7], exp(1), accuracy: 4.5e-16 * exp(1))
    }

    func testNarrowRounding() {
        XCTAssertEqual(bfloat16Rounded(1 + 0x1p-8), 1)  // a tie goes to even
        XCTAssertEqual(bfloat16Rounded(1 + 0x1p-8 + 0x1p-20), 1 + 0x1p-7)
        XCTAssertTrue(bfloat16Rounded(.nan).isNaN)
        XCTAssertEqual(halfRounded(1 + 0x1p-11), 1)  // a tie goes to even
        XCTAssertEqual(halfRounded(1 + 0x1p-11 + 0x1p-20), 1 + 0x1p-10)
        XCTAssertEqual(halfRounded(65519), 65504)
        XCTAssertEqual(halfRounded(65520), .infinity)
        XCTAssertEqual(halfRounded(0x1p-25 + 0x1p-30), 0x1p-24)  // subnormal steps of 2^-24
        XCTAssertEqual(halfBits(1), 0x3c00)
        XCTAssertEqual(halfBits(-2), 0xc000)
        XCTAssertEqual(halfBits(0x1p-24), 0x0001)
        XCTAssertEqual(halfBits(65504), 0x7bff)
        XCTAssertEqual(halfBits(-.infinity), 0xfc00)
        for bits in stride(from: 0, through: 0x7bff, by: 97) {
            let value = Double(halfToFloat(UInt16(bits)))
            XCTAssertEqual(halfBits(value), UInt16(bits))
        }
    }
}
