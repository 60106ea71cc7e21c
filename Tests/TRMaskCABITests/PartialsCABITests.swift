// The sharded-rows C entry points (include/trmask.h, SPEC §3 partial rows), called as a C program
// would: two shards of three rows, their partials, an in-place merge, and the decision, which
// must be trm_mask's on the whole rows; and the statuses of the shim and of the new codes.

import CTRMask
import TRMaskCABI
import XCTest

/// Arrays of partials for `rows` rows and estimators k2, k3, and their struct.
final class PartialsArrays {
    var codes: [Int32] = [Int32(TRM_EST_K2), Int32(TRM_EST_K3)]
    var count: [Int64]
    var nonfinite: [Int64]
    var sum: [Double]
    var max: [Float]
    var min: [Float]
    let rows: Int

    init(rows: Int = 3) {
        self.rows = rows
        count = Array(repeating: -1, count: rows)
        nonfinite = Array(repeating: -1, count: rows)
        sum = Array(repeating: 7, count: rows * 2)
        max = Array(repeating: 7, count: rows * 2)
        min = Array(repeating: 7, count: rows * 2)
    }

    /// Runs `body` with the struct over these arrays (`[rows, 2]` row-major).
    func with<R>(_ edit: (inout trm_partials_t) -> Void = { _ in }, _ body: (UnsafePointer<trm_partials_t>) -> R) -> R {
        codes.withUnsafeBufferPointer { codes in
            count.withUnsafeMutableBytes { count in
                nonfinite.withUnsafeMutableBytes { nonfinite in
                    sum.withUnsafeMutableBytes { sum in
                        max.withUnsafeMutableBytes { max in
                            min.withUnsafeMutableBytes { min in
                                var partials = trm_partials_t(
                                    struct_size: UInt32(MemoryLayout<trm_partials_t>.size), reserved: 0, n_rows: Int64(rows), n_estimators: 2,
                                    estimators: codes.baseAddress,
                                    count: trm_out_t(data: count.baseAddress, stride_row: 1, stride_col: 0),
                                    nonfinite: trm_out_t(data: nonfinite.baseAddress, stride_row: 1, stride_col: 0),
                                    sum: trm_out_t(data: sum.baseAddress, stride_row: 2, stride_col: 1),
                                    max: trm_out_t(data: max.baseAddress, stride_row: 2, stride_col: 1),
                                    min: trm_out_t(data: min.baseAddress, stride_row: 2, stride_col: 1))
                                edit(&partials)
                                return body(&partials)
                            }
                        }
                    }
                }
            }
        }
    }
}

final class PartialsCABITests: XCTestCase {
    // Three rows of eight tokens; row 1 has a spike at token 6, row 2 has no valid token.
    let cols = 8
    lazy var roll: [Float] = (0..<24).map { -1 - Float($0 % 5) / 10 }
    lazy var train: [Float] = (0..<24).map { i in roll[i] + (i == 14 ? 1.0 : Float(i % 3) * 0.01) }
    let lengths: [Int64] = [8, 8, 0]
    let options = trm_options_t(struct_size: UInt32(MemoryLayout<trm_options_t>.size), nan_policy: Int32(TRM_NAN_REJECT),
                                clamp: .infinity, reject_empty: 1, threads: 0,
                                binary_eps_set: 0, reserved: 0, binary_eps: 0, advantage: trm_advantage_rule_t())
    let criteria = [trm_criterion_t(aggregation: Int32(TRM_AGG_MAX), estimator: Int32(TRM_EST_K2), lo: -.infinity, hi: 0.1, kl_max: 0, eps: 0),
                    trm_criterion_t(aggregation: Int32(TRM_AGG_MEAN), estimator: Int32(TRM_EST_K3), lo: -.infinity, hi: 0.002, kl_max: 0, eps: 0)]
    let none = trm_view_t(data: nil, dtype: Int32(TRM_DTYPE_NONE), reserved: 0, stride_row: 0, stride_col: 0)
    let absent = trm_out_t(data: nil, stride_row: 0, stride_col: 0)

    /// The batch of columns `range` of every row (one shard), or of the whole rows.
    func withBatch<R>(_ range: Range<Int>, _ body: (UnsafePointer<trm_batch_t>) -> R) -> R {
        let train = train, roll = roll, cols = cols, none = none
        let shardLengths = lengths.map { Swift.min(Swift.max($0 - Int64(range.lowerBound), 0), Int64(range.count)) }
        return train.withUnsafeBufferPointer { t in
            roll.withUnsafeBufferPointer { r in
                shardLengths.withUnsafeBufferPointer { l in
                    var batch = trm_batch_t(
                        struct_size: UInt32(MemoryLayout<trm_batch_t>.size), layout: Int32(TRM_LAYOUT_PADDED), n_rows: 3, n_cols: Int64(range.count),
                        logp_train: trm_view_t(data: t.baseAddress! + range.lowerBound, dtype: Int32(TRM_DTYPE_F32), reserved: 0, stride_row: Int64(cols), stride_col: 1),
                        logp_roll: trm_view_t(data: r.baseAddress! + range.lowerBound, dtype: Int32(TRM_DTYPE_F32), reserved: 0, stride_row: Int64(cols), stride_col: 1),
                        log_ratio: none, values: none, mask: none,
                        lengths: trm_view_t(data: l.baseAddress, dtype: Int32(TRM_DTYPE_I64), reserved: 0, stride_row: 0, stride_col: 1),
                        offsets: none, advantages: none, row_advantages: none)
                    return body(&batch)
                }
            }
        }
    }

    /// keep_row, row_stats (row-major [3, 2]) and rejected of trm_mask (whole) or trm_partials_decide.
    func decide(_ call: (UnsafePointer<trm_criterion_t>, UnsafePointer<trm_options_t>, UnsafePointer<trm_mask_out_t>) -> trm_status_t,
                keepToken: Bool = false) -> (trm_status_t, [UInt8], [Float], [Int64]) {
        var keep = [UInt8](repeating: 9, count: 3)
        var stats = [Float](repeating: 9, count: 6)
        var rejected = [Int64](repeating: -1, count: 2)
        var grid = [UInt8](repeating: 9, count: 24)
        var options = options
        let status = criteria.withUnsafeBufferPointer { criteria in
            keep.withUnsafeMutableBytes { keep in
                stats.withUnsafeMutableBytes { stats in
                    rejected.withUnsafeMutableBufferPointer { rejected in
                        grid.withUnsafeMutableBytes { grid in
                            var out = trm_mask_out_t(struct_size: UInt32(MemoryLayout<trm_mask_out_t>.size), reserved: 0,
                                                     keep_row: trm_out_t(data: keep.baseAddress, stride_row: 1, stride_col: 0),
                                                     count: absent, nonfinite: absent,
                                                     row_stats: trm_out_t(data: stats.baseAddress, stride_row: 2, stride_col: 1),
                                                     keep_token: keepToken ? trm_out_t(data: grid.baseAddress, stride_row: 8, stride_col: 1) : absent,
                                                     rejected: rejected.baseAddress, weights: absent, weight_rule: trm_weight_rule_t(), metrics: nil,
                                                     advantage_counts: nil)
                            return call(criteria.baseAddress!, &options, &out)
                        }
                    }
                }
            }
        }
        return (status, keep, stats, rejected)
    }

    func testTwoShardsDecideAsTheWholeRows() {
        let first = PartialsArrays(), second = PartialsArrays()
        var options = options
        XCTAssertEqual(withBatch(0..<5) { batch in first.with { trm_partials_compute(batch, &options, $0) } }, TRM_OK)
        XCTAssertEqual(withBatch(5..<8) { batch in second.with { trm_partials_compute(batch, &options, $0) } }, TRM_OK)
        XCTAssertEqual(first.count, [5, 5, 0])
        XCTAssertEqual(second.count, [3, 3, 0])
        // In place: first = merge(first, second).
        XCTAssertEqual(first.with { a in second.with { b in trm_partials_merge(a, b, a) } }, TRM_OK)
        XCTAssertEqual(first.count, [8, 8, 0])
        let whole = withBatch(0..<8) { batch in decide { trm_mask(batch, $0, 2, $1, $2) } }
        let sharded = first.with { partials in decide { trm_partials_decide(partials, $0, 2, $1, $2) } }
        XCTAssertEqual(whole.0, TRM_OK)
        XCTAssertEqual(sharded.0, TRM_OK)
        XCTAssertEqual(sharded.1, whole.1)
        XCTAssertEqual(sharded.1, [1, 0, 0])  // row 1: the spike; row 2: empty, and reject_empty
        XCTAssertEqual(sharded.3, whole.3)
        XCTAssertEqual(sharded.2[0], whole.2[0])  // max k2: the same bits
        XCTAssertEqual(sharded.2[2], whole.2[2])
        XCTAssertEqual(Double(sharded.2[1]), Double(whole.2[1]), accuracy: 2e-6 * Double(whole.2[1]))  // mean k3
    }

    func testStatuses() {
        let a = PartialsArrays(), b = PartialsArrays()
        var options = options
        XCTAssertEqual(withBatch(0..<8) { batch in a.with { trm_partials_compute(batch, &options, $0) } }, TRM_OK)
        XCTAssertEqual(withBatch(0..<8) { batch in b.with { trm_partials_compute(batch, &options, $0) } }, TRM_OK)
        let out = PartialsArrays()
        func merge(_ edit: @escaping (inout trm_partials_t) -> Void) -> trm_status_t {
            a.with { a in b.with(edit) { b in out.with { trm_partials_merge(a, b, $0) } } }
        }
        XCTAssertEqual(merge { $0.n_rows = 2 }, Int32(TRM_E_BAD_PARTIALS))
        XCTAssertEqual(merge { $0.n_estimators = 1 }, Int32(TRM_E_BAD_PARTIALS))
        XCTAssertEqual(merge { $0.n_estimators = 9 }, Int32(TRM_E_BAD_SIZE))
        XCTAssertEqual(merge { $0.struct_size = 8 }, Int32(TRM_E_BAD_STRUCT_SIZE))
        XCTAssertEqual(merge { $0.reserved = 1 }, Int32(TRM_E_BAD_OPTION))
        XCTAssertEqual(merge { $0.estimators = nil }, Int32(TRM_E_NULL_POINTER))
        XCTAssertEqual(trm_partials_merge(nil, nil, nil), Int32(TRM_E_NULL_POINTER))
        XCTAssertEqual(out.count, [-1, -1, -1], "refused calls write nothing")
        b.count[0] = -2
        XCTAssertEqual(merge { _ in }, Int32(TRM_E_BAD_PARTIALS))
        b.count[0] = 8
        XCTAssertEqual(merge { _ in }, TRM_OK)
        XCTAssertEqual(out.count, [16, 16, 0])

        let token = a.with { partials in
            decide { criteria, options, out in
                var withToken = [criteria[0], trm_criterion_t(aggregation: Int32(TRM_AGG_TOKEN), estimator: Int32(TRM_EST_RATIO), lo: 0.5, hi: 2, kl_max: 0, eps: 0)]
                return trm_partials_decide(partials, &withToken, 2, options, out)
            }
        }
        XCTAssertEqual(token.0, Int32(TRM_E_NEEDS_TOKENS))
        XCTAssertEqual(token.1, [9, 9, 9])
        XCTAssertEqual(a.with { partials in decide({ trm_partials_decide(partials, $0, 2, $1, $2) }, keepToken: true) }.0,
                       Int32(TRM_E_NEEDS_TOKENS))
        a.codes = [Int32(TRM_EST_K2), Int32(TRM_EST_TV)]
        XCTAssertEqual(a.with { partials in decide { trm_partials_decide(partials, $0, 2, $1, $2) } }.0, Int32(TRM_E_BAD_ESTIMATOR))
        XCTAssertEqual(String(cString: trm_status_name(Int32(TRM_E_NEEDS_TOKENS))), "TRM_E_NEEDS_TOKENS")
        XCTAssertEqual(String(cString: trm_status_name(Int32(TRM_E_BAD_PARTIALS))), "TRM_E_BAD_PARTIALS")
    }
}
