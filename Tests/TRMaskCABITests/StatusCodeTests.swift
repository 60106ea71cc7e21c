// The C entry points called through the header's declarations (as a C program would): a valid
// call, and every status code reached by a bad argument with the outputs left untouched (SPEC §11).

import CTRMask
import TRMaskCABI
import XCTest

/// A valid trm_mask call on a [3, 5] padded batch; each test breaks one thing.
struct Call {
    var train: [Float] = (0..<15).map { -1 - Float($0) / 100 }
    var roll: [Float] = (0..<15).map { -1 - Float($0) / 100 + 0.01 }
    var mask = [UInt8](repeating: 1, count: 15)
    var lengths: [Int64] = [5, 5, 5]
    var offsets: [Int64] = [0, 5, 10, 15]
    var keep = [UInt8](repeating: 7, count: 3)
    var count = [Int64](repeating: -1, count: 3)
    var rejected = [Int64](repeating: -1, count: 2)
    var batch = trm_batch_t()
    var criteria = [trm_criterion_t(aggregation: TRM_AGG_MAX, estimator: TRM_EST_K2, lo: -.infinity, hi: 0.1, kl_max: 0, eps: 0),
                    trm_criterion_t(aggregation: TRM_AGG_MEAN, estimator: TRM_EST_K3, lo: -.infinity, hi: 0.002, kl_max: 0, eps: 0)]
    var nCriteria: Int64 = 2
    var options = trm_options_t(struct_size: UInt32(MemoryLayout<trm_options_t>.size), nan_policy: TRM_NAN_REJECT,
                                clamp: .infinity, reject_empty: 0, threads: 0,
                                binary_eps_set: 0, reserved: 0, binary_eps: 0, advantage: trm_advantage_rule_t())
    var out = trm_mask_out_t()
    var packed = false
    var useLengths = false
    var nullBatch = false
    var nullCriteria = false

    static func view(_ p: UnsafeRawPointer, _ dtype: Int32, _ rowStride: Int64, _ colStride: Int64) -> trm_view_t {
        trm_view_t(data: p, dtype: dtype, reserved: 0, stride_row: rowStride, stride_col: colStride)
    }

    /// Runs trm_mask with the arrays pinned for the call; `edit` may break the structs.
    mutating func run(_ edit: (inout Call, UnsafeRawPointer, UnsafeRawPointer) -> Void = { _, _, _ in }) -> trm_status_t {
        var copy = self
        let status = train.withUnsafeBytes { train in
            roll.withUnsafeBytes { roll in
                mask.withUnsafeBytes { mask in
                    lengths.withUnsafeBytes { lengths in
                        offsets.withUnsafeBytes { offsets in
                            keep.withUnsafeMutableBytes { keep in
                                count.withUnsafeMutableBytes { count in
                                    rejected.withUnsafeMutableBytes { rejected in
                                        let rs: Int64 = copy.packed ? 0 : 5
                                        copy.batch = trm_batch_t()
                                        copy.batch.struct_size = UInt32(MemoryLayout<trm_batch_t>.size)
                                        copy.batch.layout = copy.packed ? TRM_LAYOUT_PACKED : TRM_LAYOUT_PADDED
                                        copy.batch.n_rows = 3
                                        copy.batch.n_cols = copy.packed ? 15 : 5
                                        copy.batch.logp_train = Call.view(train.baseAddress!, TRM_DTYPE_F32, rs, 1)
                                        copy.batch.logp_roll = Call.view(roll.baseAddress!, TRM_DTYPE_F32, rs, 1)
                                        copy.batch.mask = Call.view(mask.baseAddress!, TRM_DTYPE_U8, rs, 1)
                                        if copy.packed { copy.batch.offsets = Call.view(offsets.baseAddress!, TRM_DTYPE_I64, 0, 1) }
                                        if copy.useLengths { copy.batch.lengths = Call.view(lengths.baseAddress!, TRM_DTYPE_I64, 0, 1) }
                                        copy.out = trm_mask_out_t()
                                        copy.out.struct_size = UInt32(MemoryLayout<trm_mask_out_t>.size)
                                        copy.out.keep_row = trm_out_t(data: keep.baseAddress, stride_row: 1, stride_col: 0)
                                        copy.out.count = trm_out_t(data: count.baseAddress, stride_row: 1, stride_col: 0)
                                        copy.out.rejected = rejected.baseAddress!.assumingMemoryBound(to: Int64.self)
                                        edit(&copy, train.baseAddress!, count.baseAddress!)
                                        return copy.criteria.withUnsafeBufferPointer { criteria in
                                            withUnsafePointer(to: copy.batch) { batch in
                                                withUnsafePointer(to: copy.options) { options in
                                                    withUnsafePointer(to: copy.out) { out in
                                                        trm_mask(copy.nullBatch ? nil : batch, copy.nullCriteria ? nil : criteria.baseAddress,
                                                                 copy.nCriteria, options, out)
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return status
    }

    var untouched: Bool { keep.allSatisfy { $0 == 7 } && count.allSatisfy { $0 == -1 } && rejected.allSatisfy { $0 == -1 } }
}

final class StatusCodeTests: XCTestCase {
    func testValidCall() {
        var call = Call()
        XCTAssertEqual(call.run(), TRM_OK)
        XCTAssertEqual(call.count, [5, 5, 5])
        XCTAssertEqual(call.keep, [1, 1, 1])
        XCTAssertEqual(call.rejected, [0, 0])
        var packed = Call()
        packed.packed = true
        packed.useLengths = true
        XCTAssertEqual(packed.run(), TRM_OK)
        XCTAssertEqual(packed.count, [5, 5, 5])
    }

    func testEveryStatusIsReachedAndWritesNothing() {
        let cases: [(Int32, (inout Call) -> Void, (inout Call, UnsafeRawPointer, UnsafeRawPointer) -> Void)] = [
            (TRM_E_NULL_POINTER, { $0.nullBatch = true }, { _, _, _ in }),
            (TRM_E_NULL_POINTER, { $0.nullCriteria = true }, { _, _, _ in }),
            (TRM_E_NULL_POINTER, { _ in }, { c, _, _ in c.batch.logp_roll.data = nil }),
            (TRM_E_BAD_STRUCT_SIZE, { _ in }, { c, _, _ in c.batch.struct_size = 12 }),
            (TRM_E_BAD_STRUCT_SIZE, { $0.options.struct_size = 8 }, { _, _, _ in }),
            (TRM_E_BAD_SIZE, { _ in }, { c, _, _ in c.batch.n_rows = -2 }),
            (TRM_E_BAD_SIZE, { $0.nCriteria = 1000 }, { _, _, _ in }),
            (TRM_E_BAD_DTYPE, { _ in }, { c, _, _ in c.batch.logp_train.dtype = TRM_DTYPE_I32 }),
            (TRM_E_BAD_DTYPE, { _ in }, { c, _, _ in c.batch.mask.dtype = 42 }),
            (TRM_E_BAD_STRIDE, { _ in }, { c, _, _ in c.out.keep_row.stride_row = 0 }),
            (TRM_E_BAD_STRIDE, { $0.packed = true }, { c, _, _ in c.batch.mask.stride_row = 3 }),
            (TRM_E_OUT_OF_RANGE, { _ in }, { c, _, _ in c.batch.logp_train.stride_row = Int64.max / 2 }),
            (TRM_E_ALIASING, { _ in }, { c, train, _ in c.out.keep_row.data = UnsafeMutableRawPointer(mutating: train) }),
            (TRM_E_ALIASING, { _ in }, { c, _, count in c.out.keep_row.data = UnsafeMutableRawPointer(mutating: count) }),
            (TRM_E_BAD_LAYOUT, { _ in }, { c, _, _ in c.batch.layout = 2 }),
            (TRM_E_BAD_INPUTS, { _ in }, { c, _, _ in c.batch.log_ratio = c.batch.logp_train }),
            (TRM_E_BAD_INPUTS, { _ in }, { c, _, _ in c.batch.logp_train = trm_view_t() }),
            (TRM_E_BAD_ESTIMATOR, { $0.criteria[0].estimator = 42 }, { _, _, _ in }),
            (TRM_E_BAD_ESTIMATOR, { $0.criteria[0].estimator = TRM_EST_VALUE }, { _, _, _ in }),
            (TRM_E_BAD_AGGREGATION, { $0.criteria[1].aggregation = 9 }, { _, _, _ in }),
            (TRM_E_BAD_NAN_POLICY, { $0.options.nan_policy = -1 }, { _, _, _ in }),
            (TRM_E_BAD_THRESHOLD, { $0.criteria[0].lo = .nan }, { _, _, _ in }),
            (TRM_E_BAD_THRESHOLD, { $0.criteria[1].hi = -1 }, { _, _, _ in }),
            (TRM_E_BAD_OFFSETS, { $0.packed = true; $0.offsets = [0, 6, 5, 15] }, { _, _, _ in }),
            (TRM_E_BAD_OFFSETS, { $0.packed = true; $0.offsets = [0, 5, 10, 16] }, { _, _, _ in }),
            (TRM_E_BAD_LENGTHS, { $0.useLengths = true; $0.lengths = [5, 6, 5] }, { _, _, _ in }),
            (TRM_E_BAD_LENGTHS, { $0.useLengths = true; $0.lengths = [5, -1, 5] }, { _, _, _ in }),
            (TRM_E_BAD_OPTION, { $0.options.clamp = -1 }, { _, _, _ in }),
            (TRM_E_BAD_OPTION, { $0.options.threads = -4 }, { _, _, _ in }),
            (TRM_E_BAD_OPTION, { $0.options.reject_empty = 5 }, { _, _, _ in }),
            (TRM_E_BAD_OPTION, { _ in }, { c, _, _ in c.batch.mask.reserved = 1 }),
            (TRM_E_BAD_OPTION, { $0.options.binary_eps_set = 1; $0.options.binary_eps = 0.5 }, { _, _, _ in }),
            (TRM_E_BAD_OPTION, { $0.options.binary_eps_set = 2 }, { _, _, _ in }),
            // The 2026 rules (docs/rules-2026.md).
            (TRM_E_NEEDS_LOG_PROBS, { $0.criteria[0].estimator = TRM_EST_BKL_SYM }, { c, _, _ in
                c.batch.log_ratio = c.batch.logp_train
                c.batch.logp_train = trm_view_t()
                c.batch.logp_roll = trm_view_t()
            }),
            (TRM_E_NEEDS_LOG_PROBS, { $0.options.advantage.statistic = TRM_ADV_BDIFF }, { c, _, _ in
                c.batch.log_ratio = c.batch.logp_train
                c.batch.logp_train = trm_view_t()
                c.batch.advantages = c.batch.logp_roll
                c.batch.logp_roll = trm_view_t()
            }),
            (TRM_E_BAD_ADVANTAGE_RULE, { $0.options.advantage.statistic = 7 }, { _, _, _ in }),
            (TRM_E_BAD_ADVANTAGE_RULE, { $0.options.advantage.statistic = TRM_ADV_RATIO }, { c, _, _ in
                c.batch.advantages = c.batch.logp_roll  // low = high = 0: not ratios
            }),
            (TRM_E_BAD_ADVANTAGE_RULE, { $0.options.advantage.sequence = 1; $0.options.advantage.sequence_limit = .nan }, { _, _, _ in }),
            (TRM_E_NEEDS_ADVANTAGES, { $0.options.advantage.sequence = 1 }, { _, _, _ in }),
            (TRM_E_NEEDS_ADVANTAGES, { _ in }, { c, _, _ in c.batch.advantages = c.batch.logp_roll }),
        ]
        for (index, (expected, setup, edit)) in cases.enumerated() {
            var call = Call()
            setup(&call)
            let status = call.run(edit)
            XCTAssertEqual(status, expected, "case \(index): got \(String(cString: trm_status_name(status)))")
            XCTAssertTrue(call.untouched, "case \(index) wrote an output")
        }
        let reached = Set(cases.map(\.0))
        let maskCodes = Set((1...16).map { Int32($0) }).union([TRM_E_NEEDS_LOG_PROBS, TRM_E_BAD_ADVANTAGE_RULE, TRM_E_NEEDS_ADVANTAGES])
        XCTAssertEqual(reached, maskCodes, "every refusal code of trm_mask is reached")
    }

    func testStatusTextForEveryCode() {
        for code in Array(Int32(0)...Int32(TRM_E_BAD_BOUND_INPUT)) + [TRM_E_NEEDS_LOG_PROBS, TRM_E_BAD_ADVANTAGE_RULE, TRM_E_NEEDS_ADVANTAGES] {
            XCTAssertFalse(String(cString: trm_status_string(code)).isEmpty)
            XCTAssertTrue(String(cString: trm_status_name(code)).hasPrefix("TRM_"))
        }
        XCTAssertEqual(String(cString: trm_status_name(-7)), "TRM_E_UNKNOWN")
        XCTAssertEqual(String(cString: trm_status_string(999)), "unknown status")
        XCTAssertEqual(trm_abi_version(), UInt32(TRM_ABI_VERSION))
        XCTAssertEqual(String(cString: trm_version()), TRM_VERSION_STRING)
    }
}
