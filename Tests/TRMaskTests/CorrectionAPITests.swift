// Rollout correction in verl's arithmetic through the Swift API (docs/rollout-correction.md): a
// weight mask on numbers worked by hand, packed against padded, thread counts, in-place division,
// and the three refusals of its own (TRM_E_BAD_REJECTION, _BAD_CORRECTION_WEIGHTS, _BAD_DIVISOR).
// The float64 parity over dtypes, strides and NaN is python/tests/test_correction.py's.

import TRMask
import XCTest

final class CorrectionAPITests: XCTestCase {
    /// One padded float32 batch with a float32 weight mask.
    func correct(_ train: [Float], _ roll: [Float], mask: [Float], rows: Int, cols: Int,
                 config: CorrectionConfig) throws -> CorrectionResult {
        try train.withUnsafeBufferPointer { train in
            try roll.withUnsafeBufferPointer { roll in
                try mask.withUnsafeBufferPointer { mask in
                    let batch = try TokenBatch.padded(logpTrain: StridedMatrix(train, rows: rows, cols: cols),
                                                      logpRoll: StridedMatrix(roll, rows: rows, cols: cols),
                                                      mask: StridedMatrix(mask, rows: rows, cols: cols))
                    return try rolloutCorrection(batch, config: config)
                }
            }
        }
    }

    func testWeightMaskOnNumbers() throws {
        // Row 0: tokens with weights 1 and 0.5; row 1: one token far off (k2 = 0.5 * 0.8^2 = 0.32).
        let train: [Float] = [0, Float(log(1.5)), 0, -0.8, 0, 0]
        let roll: [Float] = [0, 0, 0, 0, 0, 0]
        let mask: [Float] = [1, 0.5, 0, 1, 1, 0]
        let config = CorrectionConfig(maskWeights: true, rejections: [Rejection(.sequenceMax, .k2, hi: 0.1)],
                                      weightRule: WeightRule(level: .token, mode: .truncate, hi: 10))
        let result = try correct(train, roll, mask: mask, rows: 2, cols: 3, config: config)
        XCTAssertEqual(result.keepRow, [true, false])
        XCTAssertEqual(result.mask, [1, 0.5, 0, 0, 0, 0])  // the weights survive where kept
        XCTAssertEqual(result.weights[0], 1)
        XCTAssertEqual(result.weights[1], Double(Float(0.5 * Double(Float(1.5)))), accuracy: 1e-7)
        XCTAssertEqual(result.weights[3], Double(Float(exp(Double(Float(-0.8))))))  // rejected rows keep their weights
        let s = result.statistics
        XCTAssertEqual(s.maskSum, 3.5)
        XCTAssertEqual(s.validRows, 2)
        XCTAssertEqual(s.validTokens, 4)
        XCTAssertEqual(s.maskedFraction, 2 / (3.5 + 1e-8), accuracy: 1e-15)
        XCTAssertEqual(s.seqMaskedFraction, 0.5)
        let option = try XCTUnwrap(s.rejections.first)
        XCTAssertEqual(option.seqMax, Double(Float(0.5 * Double(Float(0.64)))), accuracy: 1e-7)
        XCTAssertEqual(option.seqFractionHigh, 0.5)
        XCTAssertEqual(option.maskedFraction, 2 / (3.5 + 1e-8), accuracy: 1e-15)
        // Row means of the weights multiply them (already w * m) by m again, as verl does.
        XCTAssertEqual(s.weights.seqMean, ((1 + 0.75 * 0.5) / (1.5 + 1e-8) + (result.weights[3] + 1) / (2 + 1e-8)) / 2, accuracy: 1e-7)
        XCTAssertTrue(s.offPolicy.trainingPPL.isFinite)
    }

    func testPackedEqualsPaddedAndThreadCountsAgree() throws {
        var rng = SplitMix(state: 7)
        let rows = 40, cols = 30
        let train = (0..<(rows * cols)).map { _ in Float(-2 * rng.unit()) }
        let roll = train.map { $0 + Float((rng.unit() - 0.5) * 0.2) }
        let mask = (0..<(rows * cols)).map { _ in rng.unit() < 0.8 ? Float([0.5, 1][rng.below(2)]) : 0 }
        var digests: Set<String> = []
        for threads in [1, 2, 3, 8] {
            let config = CorrectionConfig(maskWeights: true, threads: threads,
                                          rejections: [Rejection(.token, .k1, lo: log(0.8), hi: log(1.25)),
                                                       Rejection(.sequenceMean, .k3, hi: 0.002)],
                                          weightRule: WeightRule(level: .sequence, mode: .mask, lo: 0.5, hi: 2), normalize: true)
            let padded = try correct(train, roll, mask: mask, rows: rows, cols: cols, config: config)
            let offsets = (0...rows).map { Int64($0 * cols) }
            let packed = try train.withUnsafeBufferPointer { t in
                try roll.withUnsafeBufferPointer { r in
                    try mask.withUnsafeBufferPointer { m in
                        try offsets.withUnsafeBufferPointer { o in
                            try rolloutCorrection(TokenBatch.packed(logpTrain: t, logpRoll: r, offsets: o, mask: m), config: config)
                        }
                    }
                }
            }
            XCTAssertEqual(String(describing: packed), String(describing: padded))
            digests.insert(String(describing: padded))
        }
        XCTAssertEqual(digests.count, 1)
    }

    func testDivideWeightsInPlace() throws {
        var weights: [Float] = [1, 2, 3, 4]
        let zeros = [Float](repeating: 0, count: 4)
        try zeros.withUnsafeBufferPointer { z in
            let batch = try TokenBatch.padded(logpTrain: StridedMatrix(z, rows: 2, cols: 2), logpRoll: StridedMatrix(z, rows: 2, cols: 2))
            try weights.withUnsafeMutableBufferPointer { w in try divideWeights(w, like: batch, divisor: 2) }
            XCTAssertEqual(weights, [0.5, 1, 1.5, 2])
            for bad in [0, -1, Double.infinity, .nan] {
                XCTAssertThrowsError(try weights.withUnsafeMutableBufferPointer { w in try divideWeights(w, like: batch, divisor: bad) }) {
                    XCTAssertEqual(($0 as? TRMaskError)?.status, .badDivisor)
                }
            }
        }
        XCTAssertEqual(weights, [0.5, 1, 1.5, 2])
    }

    func testRefusals() throws {
        let data: [Float] = [0, 0]
        let cases: [(CorrectionConfig, Status)] = [
            (CorrectionConfig(rejections: [Rejection(.token, .ratio, hi: 1)]), .badRejection),
            (CorrectionConfig(rejections: [Rejection(.token, .k1, lo: 1, hi: 0)]), .badRejection),
            (CorrectionConfig(rejections: Array(repeating: Rejection(.token, .k2, hi: 1), count: 17)), .badRejection),
            (CorrectionConfig(weightRule: WeightRule(level: .geometric, mode: .truncate, hi: 2)), .badCorrectionWeights),
            (CorrectionConfig(weightRule: WeightRule(level: .token, mode: .mask, lo: 0, hi: 2)), .badCorrectionWeights),
            (CorrectionConfig(weightRule: WeightRule(level: .token, mode: .clip, lo: 0.5, hi: 2)), .badCorrectionWeights),
            (CorrectionConfig(normalize: true), .badOption),
            (CorrectionConfig(clamp: .nan), .badOption),
            (CorrectionConfig(computeDType: .u8), .badDType),
        ]
        for (config, status) in cases {
            XCTAssertThrowsError(try correct(data, data, mask: [1, 1], rows: 1, cols: 2, config: config)) {
                XCTAssertEqual(($0 as? TRMaskError)?.status, status)
            }
        }
    }
}
