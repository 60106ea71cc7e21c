// Sharded rows through the Swift API (SPEC §3, partial rows): rows cut at pseudo-random points into
// 2-4 shards (some empty), each shard's partials, merged in a shuffled order, decided; against
// trustRegionMask and sequenceStats on the whole rows: counts, max, min, keep decisions and
// rejections exactly, sums and means within SPEC §3's tolerance. NaN fails closed; errors.

import TRMask
import XCTest

/// A small deterministic generator (the tests must not depend on the platform's random source).
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

final class PartialsTests: XCTestCase {
    let criteria = [Criterion(.max, .k2, hi: 0.1), Criterion(.mean, .k3, hi: 0.002), Criterion(.min, .delta, lo: -1),
                    Criterion(.sum, .abs, hi: 1.5), Criterion(.max, .ratio, hi: 1.5)]
    let estimators: [Estimator] = [.k2, .k3, .delta, .abs, .ratio]

    /// `rows x cols` log-probs (row-major), a byte mask, and a NaN now and then.
    func rows(_ rows: Int, _ cols: Int, seed: UInt64, nans: Bool) -> (train: [Float], roll: [Float], mask: [UInt8]) {
        var rng = SplitMix(state: seed)
        var train: [Float] = [], roll: [Float] = [], mask: [UInt8] = []
        for _ in 0..<(rows * cols) {
            let r = -3 * rng.unit()
            var d = (rng.unit() - 0.5) * 0.06
            if rng.unit() < 0.02 { d = (rng.unit() - 0.5) * 4 }
            roll.append(Float(r))
            train.append(nans && rng.unit() < 0.01 ? .nan : Float(r + d))
            mask.append(rng.unit() < 0.85 ? 1 : 0)
        }
        return (train, roll, mask)
    }

    /// Partials of the tokens `spans[i]` of each row `i`, as a padded batch cut by lengths.
    func shardPartials(_ data: (train: [Float], roll: [Float], mask: [UInt8]), cols: Int, spans: [Range<Int>],
                       options: ReductionOptions) throws -> RowPartials {
        let width = spans.map(\.count).max() ?? 0
        var train = [Float](repeating: .nan, count: spans.count * width)
        var roll = train
        var mask = [UInt8](repeating: 1, count: spans.count * width)
        for (i, span) in spans.enumerated() {
            for (k, t) in span.enumerated() {
                train[i * width + k] = data.train[i * cols + t]
                roll[i * width + k] = data.roll[i * cols + t]
                mask[i * width + k] = data.mask[i * cols + t]
            }
        }
        let lengths = spans.map { Int64($0.count) }
        let estimators = estimators
        return try TokenBatch.withPadded(logpTrain: train, logpRoll: roll, rows: spans.count, cols: width, mask: mask, lengths: lengths) {
            (batch) throws(TRMaskError) in try rowPartials(batch, estimators: estimators, options: options)
        }
    }

    func testShardedRowsDecideAsWholeRows() throws {
        var rng = SplitMix(state: 42)
        for trial in 0..<40 {
            let (nRows, cols, shards) = (1 + rng.below(7), rng.below(150), 2 + rng.below(3))
            let policy: NaNPolicy = [.reject, .skip, .zero][trial % 3]
            let options = ReductionOptions(nanPolicy: policy, clamp: trial % 4 == 0 ? 0.5 : .infinity, rejectEmpty: trial % 2 == 0)
            let data = rows(nRows, cols, seed: UInt64(trial), nans: trial % 5 != 0)
            // Cut points per row; shard j of row i is cuts[i][j] ..< cuts[i][j + 1].
            let cuts = (0..<nRows).map { _ in ([0] + (1..<shards).map { _ in rng.below(cols + 1) }.sorted() + [cols]) }
            var parts = try (0..<shards).map { j in
                try shardPartials(data, cols: cols, spans: cuts.map { $0[j]..<$0[j + 1] }, options: options)
            }
            for index in parts.indices.reversed() { parts.swapAt(index, rng.below(index + 1)) }
            let merged = try parts.dropFirst().reduce(parts[0]) { try mergePartials($0, $1) }
            let decision = try keepFromPartials(merged, criteria: criteria, rejectEmpty: options.rejectEmpty)
            let (whole, stats) = try TokenBatch.withPadded(logpTrain: data.train, logpRoll: data.roll, rows: nRows, cols: cols, mask: data.mask) {
                (batch) throws(TRMaskError) in
                (try trustRegionMask(batch, criteria: criteria, options: options),
                 try sequenceStats(batch, estimators: estimators, options: options))
            }
            let what = "trial \(trial)"
            XCTAssertEqual(merged.count, whole.count, what)
            XCTAssertEqual(merged.nonfinite, whole.nonfinite, what)
            for (k, estimator) in estimators.enumerated() {
                let want = try XCTUnwrap(stats.stats[estimator])
                XCTAssertTrue(same(merged.max[k], want.max), "\(what) max \(estimator)")
                XCTAssertTrue(same(merged.min[k], want.min), "\(what) min \(estimator)")
                for row in 0..<nRows where !want.sum[row].isNaN {
                    XCTAssertEqual(merged.sum[k][row], Double(want.sum[row]), accuracy: 1e-5 * Swift.max(1, abs(merged.sum[k][row])), what)
                }
            }
            for (column, criterion) in criteria.enumerated() where criterion.aggregation == .max || criterion.aggregation == .min {
                XCTAssertTrue(same(decision.rowStats[column], whole.rowStats[column]), "\(what) \(criterion)")
            }
            XCTAssertEqual(decision.keepRow, whole.keepRow, what)  // no statistic here sits within 1e-5 of a bound
            XCTAssertEqual(decision.rejected, whole.rejected, what)
        }
    }

    func same(_ a: [Float], _ b: [Float]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }
    }

    func testNaNInOneShardFailsClosed() throws {
        let data: (train: [Float], roll: [Float], mask: [UInt8]) = ([-1, -1, -1, .nan], [-1, -1, -1, -1], [1, 1, 1, 1])
        let a = try shardPartials(data, cols: 4, spans: [0..<2], options: ReductionOptions())
        let b = try shardPartials(data, cols: 4, spans: [2..<4], options: ReductionOptions())
        let merged = try mergePartials(a, b)
        XCTAssertEqual(merged.count, [4])
        XCTAssertEqual(merged.nonfinite, [1])
        XCTAssertTrue(merged.max[0][0].isNaN && merged.sum[1][0].isNaN)
        let decision = try keepFromPartials(merged)
        XCTAssertEqual(decision.keepRow, [false])
        XCTAssertEqual(decision.rejected, [1, 1])
        // An empty side is the identity, whatever its (ignored) statistics.
        var empty = RowPartials(rows: 1, estimators: estimators)
        empty.max = estimators.map { _ in [100] }
        XCTAssertEqual(try mergePartials(a, empty), a)
        XCTAssertEqual(try mergePartials(empty, a), a)
    }

    func testErrors() throws {
        let a = RowPartials(rows: 2, estimators: [.k2, .k3])
        XCTAssertThrowsError(try keepFromPartials(a, criteria: [Criterion(.token, .ratio, lo: 0.5, hi: 2)])) {
            XCTAssertEqual(($0 as? TRMaskError)?.status, .needsTokens)
            XCTAssertEqual(($0 as? TRMaskError)?.argument, "criteria")
        }
        XCTAssertThrowsError(try keepFromPartials(a, criteria: [Criterion(.mean, .tv, hi: 0.1)])) {
            XCTAssertEqual(($0 as? TRMaskError)?.status, .badEstimator)
        }
        XCTAssertThrowsError(try mergePartials(a, RowPartials(rows: 3, estimators: [.k2, .k3]))) {
            XCTAssertEqual(($0 as? TRMaskError)?.status, .badPartials)
            XCTAssertEqual(($0 as? TRMaskError)?.argument, "b")
        }
        XCTAssertThrowsError(try mergePartials(a, RowPartials(rows: 2, estimators: [.k3, .k2]))) {
            XCTAssertEqual(($0 as? TRMaskError)?.status, .badPartials)
        }
        var ragged = a
        ragged.sum[1] = [0]
        XCTAssertThrowsError(try mergePartials(a, ragged)) {
            XCTAssertEqual(($0 as? TRMaskError)?.status, .badSize)
            XCTAssertEqual(($0 as? TRMaskError)?.argument, "b")
        }
        var negative = a
        negative.count[0] = -1
        XCTAssertThrowsError(try keepFromPartials(negative)) {
            XCTAssertEqual(($0 as? TRMaskError)?.status, .badPartials)
            XCTAssertEqual(($0 as? TRMaskError)?.argument, "partials")
        }
        let x: [Float] = [0, 0]
        XCTAssertThrowsError(try TokenBatch.withPadded(logpTrain: x, logpRoll: x, rows: 1, cols: 2) { (batch) throws(TRMaskError) in
            try rowPartials(batch, estimators: [.k2, .k2])
        }) { XCTAssertEqual(($0 as? TRMaskError)?.argument, "estimators") }
        // Sizes whose product overflows, or a negative size, throw before any indexing.
        for (rows, cols) in [(Int.max, 2), (1 << 32, 1 << 32), (-1, -2), (-1, 0)] {
            XCTAssertThrowsError(try TokenBatch.withPadded(logpTrain: x, logpRoll: x, rows: rows, cols: cols) {
                (batch) throws(TRMaskError) in try rowPartials(batch, estimators: [.k2])
            }) { XCTAssertEqual($0 as? TRMaskError, TRMaskError(.badSize, argument: "rows, cols")) }
            let view = StridedMatrix<Float>(base: nil, rows: rows, cols: cols)
            XCTAssertThrowsError(try trustRegionMask(TokenBatch.padded(logRatio: view), keepToken: true)) {
                XCTAssertEqual($0 as? TRMaskError, TRMaskError(.badSize, argument: "logRatio"))
            }
        }
    }
}
