// The exact-KL C entry points (include/trmask.h): struct translation statuses, and the documented
// two-call exact TRM (trm_exact_kl, then trm_mask on the KL as `values`).

import CTRMask
import TRMaskCABI
import XCTest

final class ExactKLCABITests: XCTestCase {
    // [B = 2, T = 2, V = 3] logits, row-major; position [1, 1] differs.
    let a: [Float] = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]
    let b: [Float] = [0, 1, 2, 0, 1, 2, 0, 1, 2, 4, 1, 2]

    func view3(_ p: UnsafeBufferPointer<Float>) -> trm_view3_t {
        trm_view3_t(data: UnsafeRawPointer(p.baseAddress), dtype: Int32(TRM_DTYPE_F32), reserved: 0, stride_row: 6, stride_col: 3, stride_depth: 1)
    }

    func callExactKL(_ edit: (inout trm_logit_pair_t, inout trm_logit_options_t, inout trm_exact_kl_out_t) -> Void) -> (trm_status_t, [Float]) {
        var kl = [Float](repeating: -1, count: 4)
        let status = a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                kl.withUnsafeMutableBufferPointer { kl in
                    let none = trm_view_t(data: nil, dtype: Int32(TRM_DTYPE_NONE), reserved: 0, stride_row: 0, stride_col: 0)
                    var pair = trm_logit_pair_t(struct_size: UInt32(MemoryLayout<trm_logit_pair_t>.size), reserved: 0, n_rows: 2, n_cols: 2, vocab: 3,
                                                rollout: view3(a), train: view3(b), mask: none, token_ids: none)
                    var options = trm_logit_options_t(struct_size: UInt32(MemoryLayout<trm_logit_options_t>.size), threads: 0, temperature: 1)
                    let absent = trm_out_t(data: nil, stride_row: 0, stride_col: 0)
                    var out = trm_exact_kl_out_t(struct_size: UInt32(MemoryLayout<trm_exact_kl_out_t>.size), reserved: 0,
                                                 kl: trm_out_t(data: UnsafeMutableRawPointer(kl.baseAddress), stride_row: 2, stride_col: 1),
                                                 tv: absent, logp_roll_token: absent, logp_train_token: absent)
                    edit(&pair, &options, &out)
                    return trm_exact_kl(&pair, &options, &out)
                }
            }
        }
        return (status, kl)
    }

    func testStatusesOfTheShim() {
        XCTAssertEqual(callExactKL { _, _, _ in }.0, TRM_OK)
        XCTAssertEqual(callExactKL { pair, _, _ in pair.struct_size = 8 }.0, Int32(TRM_E_BAD_STRUCT_SIZE))
        XCTAssertEqual(callExactKL { _, options, _ in options.struct_size = 4 }.0, Int32(TRM_E_BAD_STRUCT_SIZE))
        XCTAssertEqual(callExactKL { pair, _, _ in pair.reserved = 1 }.0, Int32(TRM_E_BAD_OPTION))
        XCTAssertEqual(callExactKL { pair, _, _ in pair.rollout.reserved = 1 }.0, Int32(TRM_E_BAD_OPTION))
        XCTAssertEqual(callExactKL { _, _, out in out.reserved = 1 }.0, Int32(TRM_E_BAD_OPTION))
        XCTAssertEqual(callExactKL { pair, _, _ in pair.train.dtype = Int32(TRM_DTYPE_NONE) }.0, Int32(TRM_E_BAD_DTYPE))
        XCTAssertEqual(callExactKL { pair, _, _ in pair.train.dtype = 99 }.0, Int32(TRM_E_BAD_DTYPE))
        XCTAssertEqual(callExactKL { _, options, _ in options.temperature = -1 }.0, Int32(TRM_E_BAD_TEMPERATURE))
        XCTAssertEqual(callExactKL { _, options, _ in options.temperature = 0 }.0, Int32(TRM_OK))  // 0 = 1, the default
        XCTAssertEqual(callExactKL { _, options, _ in options.threads = -1 }.0, Int32(TRM_E_BAD_OPTION))
        XCTAssertEqual(trm_exact_kl(nil, nil, nil), Int32(TRM_E_NULL_POINTER))
        XCTAssertEqual(String(cString: trm_status_name(Int32(TRM_E_BAD_TOKEN_ID))), "TRM_E_BAD_TOKEN_ID")
    }

    func testTwoCallExactTRM() {
        let (status, kl) = callExactKL { _, _, _ in }
        XCTAssertEqual(status, TRM_OK)
        XCTAssertEqual(Array(kl[0..<3]), [0, 0, 0])
        XCTAssertGreaterThan(kl[3], 0.1)
        var keep: [UInt8] = [9, 9]
        let maskStatus = kl.withUnsafeBufferPointer { values in
            keep.withUnsafeMutableBufferPointer { keep in
                let none = trm_view_t(data: nil, dtype: Int32(TRM_DTYPE_NONE), reserved: 0, stride_row: 0, stride_col: 0)
                var batch = trm_batch_t(struct_size: UInt32(MemoryLayout<trm_batch_t>.size), layout: Int32(TRM_LAYOUT_PADDED), n_rows: 2, n_cols: 2,
                                        logp_train: none, logp_roll: none, log_ratio: none,
                                        values: trm_view_t(data: UnsafeRawPointer(values.baseAddress), dtype: Int32(TRM_DTYPE_F32), reserved: 0, stride_row: 2, stride_col: 1),
                                        mask: none, lengths: none, offsets: none, advantages: none, row_advantages: none)
                var criteria = [trm_criterion_t(aggregation: Int32(TRM_AGG_MAX), estimator: Int32(TRM_EST_VALUE), lo: -.infinity, hi: 0.1, kl_max: 0, eps: 0),
                                trm_criterion_t(aggregation: Int32(TRM_AGG_MEAN), estimator: Int32(TRM_EST_VALUE), lo: -.infinity, hi: 0.002, kl_max: 0, eps: 0)]
                var options = trm_options_t(struct_size: UInt32(MemoryLayout<trm_options_t>.size), nan_policy: Int32(TRM_NAN_REJECT), clamp: .infinity,
                                            reject_empty: 0, threads: 0,
                                binary_eps_set: 0, reserved: 0, binary_eps: 0, advantage: trm_advantage_rule_t())
                let absent = trm_out_t(data: nil, stride_row: 0, stride_col: 0)
                var out = trm_mask_out_t(struct_size: UInt32(MemoryLayout<trm_mask_out_t>.size), reserved: 0,
                                         keep_row: trm_out_t(data: UnsafeMutableRawPointer(keep.baseAddress), stride_row: 1, stride_col: 0),
                                         count: absent, nonfinite: absent, row_stats: absent, keep_token: absent, rejected: nil,
                                         weights: absent, weight_rule: trm_weight_rule_t(), metrics: nil,
                                                     advantage_counts: nil)
                return trm_mask(&batch, &criteria, 2, &options, &out)
            }
        }
        XCTAssertEqual(maskStatus, TRM_OK)
        XCTAssertEqual(keep, [1, 0])
    }
}
