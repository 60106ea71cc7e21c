// Tests of `trm_bounds_compute` through the C declarations of include/trmask.h: parity with the
// shared vectors, the NaN-means-derive convention, and every status the header lists for it, with
// the output left untouched on error. Tolerance 1e-12 relative against bounds.json (the shim adds
// no arithmetic).

import CTRMask
import Foundation
import TRMaskCABI
import XCTest

final class BoundsEntryPointTests: XCTestCase {
    private static func inputs(T: Int64 = 10, klMax: Double = 0.01, klSeq: Double = 0.1, eps: Double = .nan,
                               tvSeq: Double = .nan, rewardRange: Double = 1) -> trm_bound_inputs_t {
        var inputs = trm_bound_inputs_t()
        inputs.struct_size = UInt32(MemoryLayout<trm_bound_inputs_t>.size)
        inputs.T = T
        inputs.kl_max = klMax
        inputs.kl_seq = klSeq
        inputs.eps = eps
        inputs.tv_seq = tvSeq
        inputs.reward_range = rewardRange
        return inputs
    }

    private static func output() -> trm_bounds_t {
        var out = trm_bounds_t()
        out.struct_size = UInt32(MemoryLayout<trm_bounds_t>.size)
        out.unified = -42  // a sentinel: errors must leave it
        return out
    }

    private static func values(_ b: trm_bounds_t) -> [String: Double] {
        ["classical_tv": b.classical_tv, "classical_kl": b.classical_kl, "coupling": b.coupling, "pm_kl": b.pm_kl,
         "pm_tv": b.pm_tv, "mixed_kl": b.mixed_kl, "mixed_tv": b.mixed_tv, "linear": b.linear,
         "adaptive": b.adaptive, "unified": b.unified]
    }

    func testVectors() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("vectors/bounds.json")
        let cases = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [[String: Any]])
        for (index, c) in cases.enumerated() {
            var request = Self.inputs(
                T: try XCTUnwrap((c["T"] as? NSNumber)?.int64Value), klMax: try XCTUnwrap((c["delta"] as? NSNumber)?.doubleValue),
                klSeq: try XCTUnwrap((c["kl_seq"] as? NSNumber)?.doubleValue),
                eps: (c["eps"] as? NSNumber)?.doubleValue ?? .nan, tvSeq: (c["tv_seq"] as? NSNumber)?.doubleValue ?? .nan)
            var out = Self.output()
            XCTAssertEqual(trm_bounds_compute(&request, &out), TRM_OK)
            let expected = try XCTUnwrap(c["expected"] as? [String: NSNumber])
            let got = Self.values(out)
            XCTAssertEqual(Set(got.keys), Set(expected.keys))
            for (key, want) in expected {
                let w = want.doubleValue
                XCTAssertEqual(try XCTUnwrap(got[key]), w, accuracy: 1e-12 * Swift.max(w.magnitude, 1e-300), "case \(index) \(key)")
            }
        }
    }

    func testDbarIsRead() {
        let dbar: [Double] = [0.1, 0.2, 0.3]
        var request = Self.inputs(T: 3)
        var out = Self.output()
        let status = dbar.withUnsafeBufferPointer { buffer in
            request.dbar = buffer.baseAddress
            request.dbar_count = 3
            return trm_bounds_compute(&request, &out)
        }
        XCTAssertEqual(status, TRM_OK)
        XCTAssertEqual(out.linear, 4 * 0.6, accuracy: 1e-15)
    }

    func testLargerStructsAreAcceptedAndTheirTailKept() {
        // A caller compiled against a later header passes larger structs.
        let inputSize = MemoryLayout<trm_bound_inputs_t>.size
        let outputSize = MemoryLayout<trm_bounds_t>.size
        let input = UnsafeMutableRawPointer.allocate(byteCount: inputSize + 16, alignment: 16)
        let output = UnsafeMutableRawPointer.allocate(byteCount: outputSize + 16, alignment: 16)
        defer { input.deallocate(); output.deallocate() }
        var request = Self.inputs(T: 4096, klMax: 1e-4, klSeq: 0.01)
        request.struct_size = UInt32(inputSize + 16)
        input.initializeMemory(as: UInt8.self, repeating: 0, count: inputSize + 16)
        input.storeBytes(of: request, as: trm_bound_inputs_t.self)
        var out = Self.output()
        out.struct_size = UInt32(outputSize + 16)
        output.initializeMemory(as: UInt8.self, repeating: 0xAB, count: outputSize + 16)
        output.storeBytes(of: out, as: trm_bounds_t.self)
        let status = trm_bounds_compute(input.assumingMemoryBound(to: trm_bound_inputs_t.self),
                                        output.assumingMemoryBound(to: trm_bounds_t.self))
        XCTAssertEqual(status, TRM_OK)
        XCTAssertEqual(output.load(as: trm_bounds_t.self).unified, 8.192, accuracy: 1e-12)
        XCTAssertEqual(output.load(as: trm_bounds_t.self).struct_size, UInt32(outputSize + 16))
        for offset in outputSize..<(outputSize + 16) { XCTAssertEqual(output.load(fromByteOffset: offset, as: UInt8.self), 0xAB) }
    }

    func testEveryStatusLeavesTheOutputUntouched() {
        func expect(_ status: Int32, line: UInt = #line, _ change: (inout trm_bound_inputs_t, inout trm_bounds_t) -> Void) {
            var request = Self.inputs()
            var out = Self.output()
            change(&request, &out)
            let before = Self.values(out)
            XCTAssertEqual(trm_bounds_compute(&request, &out), status, line: line)
            XCTAssertEqual(Self.values(out), before, line: line)
        }
        var request = Self.inputs()
        var out = Self.output()
        XCTAssertEqual(trm_bounds_compute(nil, &out), TRM_E_NULL_POINTER)
        XCTAssertEqual(trm_bounds_compute(&request, nil), TRM_E_NULL_POINTER)
        expect(TRM_E_BAD_STRUCT_SIZE) { request, _ in request.struct_size -= 8 }
        expect(TRM_E_BAD_STRUCT_SIZE) { _, out in out.struct_size = 8 }
        expect(TRM_E_BAD_OPTION) { request, _ in request.reserved = 1 }
        expect(TRM_E_BAD_OPTION) { _, out in out.reserved = -1 }
        expect(TRM_E_NULL_POINTER) { request, _ in request.dbar_count = 10 }
        expect(TRM_E_BAD_SIZE) { request, _ in request.dbar_count = -1 }
        expect(TRM_E_OUT_OF_RANGE) { request, _ in
            request.dbar = UnsafePointer(bitPattern: UInt.max - 15)  // never dereferenced
            request.dbar_count = 10
        }
        expect(TRM_E_OUT_OF_RANGE) { request, _ in
            request.dbar = UnsafePointer(bitPattern: 64)
            request.dbar_count = .max
        }
        for bad in [-1.0, .infinity, -.infinity] {
            expect(TRM_E_BAD_BOUND_INPUT) { request, _ in request.kl_max = bad }
            expect(TRM_E_BAD_BOUND_INPUT) { request, _ in request.kl_seq = bad }
            expect(TRM_E_BAD_BOUND_INPUT) { request, _ in request.eps = bad }
            expect(TRM_E_BAD_BOUND_INPUT) { request, _ in request.tv_seq = bad }
            expect(TRM_E_BAD_BOUND_INPUT) { request, _ in request.reward_range = bad }
        }
        expect(TRM_E_BAD_BOUND_INPUT) { request, _ in request.kl_max = .nan }
        expect(TRM_E_BAD_BOUND_INPUT) { request, _ in request.kl_seq = .nan }
        expect(TRM_E_BAD_BOUND_INPUT) { request, _ in request.reward_range = .nan }
        // reward_range = 0 is the zeroed default, 1 (python/tests/test_zero_defaults.py).
        expect(TRM_E_BAD_BOUND_INPUT) { request, _ in request.T = 0 }
        expect(TRM_E_BAD_BOUND_INPUT) { request, _ in request.T = .min }
        // dbar of the wrong length, and with a bad element.
        let dbar: [Double] = [0.1, .nan, 0.1]
        dbar.withUnsafeBufferPointer { buffer in
            expect(TRM_E_BAD_BOUND_INPUT) { request, _ in request.dbar = buffer.baseAddress; request.dbar_count = 3 }
            expect(TRM_E_BAD_BOUND_INPUT) { request, _ in request.dbar = buffer.baseAddress; request.dbar_count = 1 }
        }
        XCTAssertEqual(String(cString: trm_status_name(TRM_E_BAD_BOUND_INPUT)), "TRM_E_BAD_BOUND_INPUT")
    }

    func testNaNMeansDerive() {
        var derived = Self.inputs(T: 4096, klMax: 1e-4, klSeq: 0.01)
        var explicit = Self.inputs(T: 4096, klMax: 1e-4, klSeq: 0.01, eps: (0.5e-4).squareRoot(), tvSeq: (0.005).squareRoot())
        var a = Self.output()
        var b = Self.output()
        XCTAssertEqual(trm_bounds_compute(&derived, &a), TRM_OK)
        XCTAssertEqual(trm_bounds_compute(&explicit, &b), TRM_OK)
        XCTAssertEqual(Self.values(a), Self.values(b))
    }
}
