// The Swift API of the exact KL (SPEC §6) and the exact TRM (SPEC §4.2): shapes, typed errors naming
// the argument, and the exact TRM's keep decisions against the KL it reports.

import TRMask
import XCTest

final class ExactKLAPITests: XCTestCase {
    /// Two positions of a 5-token vocabulary: identical logits, then a clearly different pair.
    let rollout: [Float] = [1, 2, 3, 4, 5, 0, 0, 0, 0, 0]
    let train: [Float] = [1, 2, 3, 4, 5, 3, 0, 0, 0, 0]

    func testExactKLShapesAndValues() throws {
        let result = try rollout.withUnsafeBufferPointer { a in
            try train.withUnsafeBufferPointer { b in
                try [Int64(4), 0].withUnsafeBufferPointer { ids in
                    try exactKL(train: StridedTensor3(b, positions: 2, depth: 5), rollout: StridedTensor3(a, positions: 2, depth: 5),
                                tokenIDs: StridedMatrix(ids, rows: 2, cols: 1), tv: true)
                }
            }
        }
        XCTAssertEqual(result.kl.count, 2)
        XCTAssertEqual(result.kl[0], 0)
        // p uniform over 5, q = (e^3, 1, 1, 1, 1) / (e^3 + 4): KL = log((e^3 + 4) / 5) - 3 / 5.
        let expected = log((exp(3.0) + 4) / 5) - 0.6
        XCTAssertEqual(Double(result.kl[1]), expected, accuracy: 1e-6)
        XCTAssertEqual(result.tv?.count, 2)
        XCTAssertEqual(Double(result.logpTrainToken?[1] ?? 0), 3 - log(exp(3.0) + 4), accuracy: 1e-6)
    }

    func testErrorsNameTheArgument() throws {
        try rollout.withUnsafeBufferPointer { (a) throws -> Void in
            let view = StridedTensor3(a, positions: 2, depth: 5)
            XCTAssertThrowsError(try exactKL(train: view, rollout: view, options: LogitOptions(temperature: -1))) { error in
                XCTAssertEqual(error as? TRMaskError, TRMaskError(.badTemperature, argument: "temperature"))
            }
            XCTAssertThrowsError(try [Int64(5), 0].withUnsafeBufferPointer { ids in
                try exactKL(train: view, rollout: view, tokenIDs: StridedMatrix(ids, rows: 2, cols: 1))
            }) { error in
                XCTAssertEqual((error as? TRMaskError)?.status, .badTokenID)
            }
            let negative = StridedTensor3(base: UnsafeRawPointer(a.baseAddress), dtype: .f32, rows: -1, cols: 1, depth: 5, rowStride: 5, colStride: 0)
            XCTAssertThrowsError(try exactKL(train: negative, rollout: negative)) { error in
                XCTAssertEqual(error as? TRMaskError, TRMaskError(.badSize, argument: "train"))
            }
            let huge = StridedTensor3(base: UnsafeRawPointer(a.baseAddress), dtype: .f32, rows: .max, cols: 2, depth: 5, rowStride: 5, colStride: 0)
            XCTAssertThrowsError(try exactKL(train: huge, rollout: huge)) { error in
                XCTAssertEqual((error as? TRMaskError)?.status, .badSize)
            }
            let short = StridedTensor3(a, positions: 2, depth: 4)
            XCTAssertThrowsError(try exactKL(train: view, rollout: short)) { error in
                XCTAssertEqual(error as? TRMaskError, TRMaskError(.badSize, argument: "rollout"))
            }
        }
    }

    func testExactTrustRegionMaskKeepsTheCloseRow() throws {
        // [B = 2, T = 1, V = 5]: row 0 identical, row 1 far apart.
        let result = try rollout.withUnsafeBufferPointer { a in
            try train.withUnsafeBufferPointer { b in
                try exactTrustRegionMask(
                    train: StridedTensor3(base: UnsafeRawPointer(b.baseAddress), dtype: .f32, rows: 2, cols: 1, depth: 5, rowStride: 5, colStride: 5),
                    rollout: StridedTensor3(base: UnsafeRawPointer(a.baseAddress), dtype: .f32, rows: 2, cols: 1, depth: 5, rowStride: 5, colStride: 5))
            }
        }
        XCTAssertEqual(result.mask.keepRow, [true, false])
        XCTAssertEqual(result.mask.rowStats[0], result.kl)  // max over one token = that token's KL
    }

    func testBoolAndByteMasksAgree() throws {
        let bytes: [UInt8] = [0, 1], bools = [false, true]
        func kl<M: PositionMaskScalar>(_ mask: [M]) throws -> [Float] {
            try rollout.withUnsafeBufferPointer { a in
                try train.withUnsafeBufferPointer { b in
                    try mask.withUnsafeBufferPointer { m in
                        try exactKL(train: StridedTensor3(b, positions: 2, depth: 5), rollout: StridedTensor3(a, positions: 2, depth: 5),
                                    mask: StridedMatrix(m, rows: 2, cols: 1)).kl
                    }
                }
            }
        }
        XCTAssertEqual(try kl(bools), try kl(bytes))
        XCTAssertEqual(try kl(bools)[0], 0)  // masked: skipped
        XCTAssertGreaterThan(try kl(bools)[1], 0)
    }

    func testTopKBoundIsALowerBound() throws {
        let full = try rollout.withUnsafeBufferPointer { a in
            try train.withUnsafeBufferPointer { b in
                try exactKL(train: StridedTensor3(b, positions: 2, depth: 5), rollout: StridedTensor3(a, positions: 2, depth: 5)).kl
            }
        }
        // top-2 of p: position 0 (logits 1..5) tokens 4, 3; position 1 (uniform) tokens 0, 1.
        let logprobs: [Float] = [5 - Float(log(exp(1.0) + exp(2) + exp(3) + exp(4) + exp(5))), 4 - Float(log(exp(1.0) + exp(2) + exp(3) + exp(4) + exp(5))),
                                 -Float(log(5.0)), -Float(log(5.0))]
        let ids: [Int64] = [4, 3, 0, 1]
        let bound = try logprobs.withUnsafeBufferPointer { lp in
            try ids.withUnsafeBufferPointer { ids in
                try train.withUnsafeBufferPointer { b in
                    try topKKLLowerBound(train: StridedTensor3(b, positions: 2, depth: 5), rolloutLogprobs: StridedTensor3(lp, positions: 2, depth: 2),
                                         rolloutIDs: StridedTensor3(ids, positions: 2, depth: 2))
                }
            }
        }
        XCTAssertEqual(bound.count, 2)
        XCTAssertLessThanOrEqual(bound[0], 1e-6)
        XCTAssertGreaterThan(bound[1], 0)
        XCTAssertLessThanOrEqual(bound[1], full[1] * (1 + 1e-5))
    }
}
