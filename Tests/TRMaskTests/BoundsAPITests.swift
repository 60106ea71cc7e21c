// Tests of the Swift API of the error-bound calculator (SPEC §7): parity with the shared vectors
// through `errorBounds(T:klMax:...)`, the `named` order, and every refused input throwing
// `TRMaskError(.badBoundInput)` with the argument's name.
//
// Tolerance: 1e-12 relative against bounds.json, as in the kernel tests (the API adds no
// arithmetic, so any difference would be a wiring bug, not rounding).

import Foundation
import TRMask
import XCTest

final class BoundsAPITests: XCTestCase {
    private static let keys = [
        "classical_tv", "classical_kl", "coupling", "pm_kl", "pm_tv", "mixed_kl", "mixed_tv", "linear",
        "adaptive", "unified",
    ]

    func testVectorsThroughTheAPI() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("vectors/bounds.json")
        let cases = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [[String: Any]])
        XCTAssertFalse(cases.isEmpty)
        for (index, c) in cases.enumerated() {
            let got = try errorBounds(
                T: try XCTUnwrap((c["T"] as? NSNumber)?.intValue),
                klMax: try XCTUnwrap((c["delta"] as? NSNumber)?.doubleValue),
                klSeq: try XCTUnwrap((c["kl_seq"] as? NSNumber)?.doubleValue),
                eps: (c["eps"] as? NSNumber)?.doubleValue, tvSeq: (c["tv_seq"] as? NSNumber)?.doubleValue)
            let expected = try XCTUnwrap(c["expected"] as? [String: NSNumber])
            XCTAssertEqual(got.named.map(\.key), Self.keys)
            for (key, value) in got.named {
                let want = try XCTUnwrap(expected[key]).doubleValue
                XCTAssertEqual(value, want, accuracy: 1e-12 * Swift.max(want.magnitude, 1e-300), "case \(index) \(key)")
            }
        }
    }

    func testDbarAndRewardRange() throws {
        let dbar = (0..<50).map { Double($0) / 500 }
        let got = try errorBounds(T: 50, klMax: 0.02, klSeq: 0.3, eps: 0.08, dbar: dbar, rewardRange: 2)
        XCTAssertEqual(got.linear, 2 * 4 * dbar.reduce(0, +), accuracy: 1e-13)
        let plain = try errorBounds(T: 50, klMax: 0.02, klSeq: 0.3, eps: 0.08)
        XCTAssertEqual(got.pmKL, 2 * plain.pmKL)
    }

    func testEveryRefusedInputNamesItsArgument() {
        func expect(_ argument: String, line: UInt = #line, _ call: () throws(TRMaskError) -> Bounds) {
            do {
                _ = try call()
                XCTFail("no error for \(argument)", line: line)
            } catch {
                XCTAssertEqual(error, TRMaskError(.badBoundInput, argument: argument), line: line)
                XCTAssertEqual(error.status.rawValue, 20, line: line)
                XCTAssertTrue(error.description.hasPrefix("`\(argument)`"), error.description, line: line)
            }
        }
        for T in [0, -1, Int.min] { expect("T") { () throws(TRMaskError) in try errorBounds(T: T, klMax: 0.1, klSeq: 0.1) } }
        for bad in [-1e-300, -1, Double.nan, .infinity, -.infinity] {
            expect("klMax") { () throws(TRMaskError) in try errorBounds(T: 10, klMax: bad, klSeq: 0.1) }
            expect("klSeq") { () throws(TRMaskError) in try errorBounds(T: 10, klMax: 0.1, klSeq: bad) }
            expect("eps") { () throws(TRMaskError) in try errorBounds(T: 10, klMax: 0.1, klSeq: 0.1, eps: bad) }
            expect("tvSeq") { () throws(TRMaskError) in try errorBounds(T: 10, klMax: 0.1, klSeq: 0.1, tvSeq: bad) }
            expect("rewardRange") { () throws(TRMaskError) in try errorBounds(T: 10, klMax: 0.1, klSeq: 0.1, rewardRange: bad) }
            expect("dbar") { () throws(TRMaskError) in
                try errorBounds(T: 3, klMax: 0.1, klSeq: 0.1, dbar: [0.1, bad, 0.1])
            }
        }
        expect("rewardRange") { () throws(TRMaskError) in try errorBounds(T: 10, klMax: 0.1, klSeq: 0.1, rewardRange: 0) }
        expect("dbar") { () throws(TRMaskError) in try errorBounds(T: 3, klMax: 0.1, klSeq: 0.1, dbar: [0.1, 0.1]) }
        expect("dbar") { () throws(TRMaskError) in try errorBounds(T: 1, klMax: 0.1, klSeq: 0.1, dbar: []) }
    }
}
