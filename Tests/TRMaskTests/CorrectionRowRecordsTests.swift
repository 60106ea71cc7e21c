// Row records through the Swift API (docs/sharded-rows.md): a batch split by rows into shards, an
// empty one included, reduces to the whole call's statistics bit for bit; records that are not a
// call's are refused. The random sweep over dtypes, masks and configs is
// python/tests/test_correction_rows.py's.

import TRMask
import XCTest

final class CorrectionRowRecordsTests: XCTestCase {
    let rows = 13, cols = 17
    let config = CorrectionConfig(maskWeights: true,
                                  rejections: [Rejection(.token, .k1, lo: log(0.8), hi: log(1.25)),
                                               Rejection(.sequenceMean, .k3, hi: 0.002)],
                                  weightRule: WeightRule(level: .sequence, mode: .mask, lo: 0.5, hi: 2))

    /// rows `range` of a random batch (NaN included), with row records.
    func correct(_ range: Range<Int>) throws -> CorrectionResult {
        var rng = SplitMix(state: 3)
        var train = (0..<(rows * cols)).map { _ in Float(-2 * rng.unit()) }
        let roll = train.map { $0 + Float((rng.unit() - 0.5) * 0.2) }
        var mask = (0..<(rows * cols)).map { _ in rng.unit() < 0.8 ? Float([0.5, 1, 2][rng.below(3)]) : 0 }
        (train[20], mask[20]) = (.nan, 1)  // a NaN on a valid token
        let elements = (range.lowerBound * cols)..<(range.upperBound * cols)
        let (t, r, m) = (Array(train[elements]), Array(roll[elements]), Array(mask[elements]))
        return try t.withUnsafeBufferPointer { t in
            try r.withUnsafeBufferPointer { r in
                try m.withUnsafeBufferPointer { m in
                    let n = range.count
                    let batch = try TokenBatch.padded(logpTrain: StridedMatrix(t, rows: n, cols: cols),
                                                      logpRoll: StridedMatrix(r, rows: n, cols: cols),
                                                      mask: StridedMatrix(m, rows: n, cols: cols))
                    return try rolloutCorrection(batch, config: config, rowRecords: true)
                }
            }
        }
    }

    func testShardsReduceToTheWholeCallBitForBit() throws {
        let whole = try correct(0..<rows)
        let records = try XCTUnwrap(whole.rowRecords)
        XCTAssertEqual(records.values.count, rows * (18 + 10 * 2))
        let shards = try [0..<5, 5..<5, 5..<9, 9..<13].map { try XCTUnwrap(correct($0).rowRecords) }
        XCTAssertEqual(shards.flatMap(\.values).map(\.bitPattern), records.values.map(\.bitPattern))
        let reduced = try reduceCorrectionRows(shards, config: config)
        XCTAssertTrue(whole.statistics.offPolicy.kl.isNaN)  // the NaN reaches the statistics...
        XCTAssertEqual(String(describing: reduced), String(describing: whole.statistics))  // ...and NaN-safe equality
        XCTAssertEqual(String(describing: try reduceCorrectionRows([], config: config).rows), "0")
    }

    func testRecordsThatAreNotACallsAreRefused() throws {
        var shard = try XCTUnwrap(correct(0..<3).rowRecords)
        shard.values[8] = 2  // any_rejected of row 0
        XCTAssertThrowsError(try reduceCorrectionRows([shard], config: config)) {
            XCTAssertEqual(($0 as? TRMaskError)?.status, .badCorrectionRows)
        }
        shard.values.removeLast()
        XCTAssertThrowsError(try reduceCorrectionRows([shard], config: config)) {
            XCTAssertEqual(($0 as? TRMaskError)?.status, .badSize)
        }
        var other = try XCTUnwrap(correct(0..<3).rowRecords)
        other.logProbs = false
        XCTAssertThrowsError(try reduceCorrectionRows([try XCTUnwrap(correct(3..<5).rowRecords), other], config: config)) {
            XCTAssertEqual(($0 as? TRMaskError)?.status, .badCorrectionRows)
        }
    }
}
