import TRMaskKernels

/// The 2026 rules' types under this module's name (docs/rules-2026.md).
public typealias AdvantageRule = TRMaskKernels.AdvantageRule
public typealias AdvantageStatistic = TRMaskKernels.AdvantageStatistic
public typealias ZeroAdvantage = TRMaskKernels.ZeroAdvantage
public typealias SingletonRule = TRMaskKernels.SingletonRule
public typealias GroupSummary = TRMaskKernels.GroupSummary

/// What `advantageMask` returns (semantics §4.8).
public struct AdvantageMaskResult: Equatable, Sendable {
    /// Token grid (layout as `MaskResult.keepToken`): valid, in a kept row, not masked by the rule.
    public var keepToken: [Bool]
    /// Rows kept (only the sequence rule rejects rows).
    public var keepRow: [Bool]
    /// Tokens masked on the upper side, on the lower side, with `A > 0`, with `A < 0`; rows the
    /// sequence rule rejected.
    public var maskedUpper: Int, maskedLower: Int, maskedPositive: Int, maskedNegative: Int, rowsRejected: Int
}

/// An advantage rule (semantics §4.8) with `advantages` one per row (`rows` entries) or one per
/// token position (the token grid's size), ANDed with `criteria` (default none). Throws
/// `.badSize` naming `advantages` for any other length.
public func advantageMask(_ batch: TokenBatch, advantages: [Double], rule: AdvantageRule, criteria: [Criterion] = [],
                          options: ReductionOptions = ReductionOptions()) throws(TRMaskError) -> AdvantageMaskResult {
    let perRow = advantages.count == batch.rows && (rule.sequenceLimit != nil || advantages.count != batch.gridCount)
    guard perRow || advantages.count == batch.gridCount else { throw TRMaskError(.badSize, argument: "advantages") }
    var options = options
    options.advantageRule = rule
    let gridStride = batch.batch.layout == .padded ? batch.cols : 0
    var keepRow = [UInt8](repeating: 0, count: batch.rows)
    var tokens = [UInt8](repeating: 0, count: batch.gridCount)
    var counts = [Int64](repeating: 0, count: 5)
    var rejected = [Int64](repeating: 0, count: criteria.count)
    let status = advantages.withUnsafeBufferPointer { advantages in
        keepRow.withUnsafeMutableBufferPointer { keepRow in
            tokens.withUnsafeMutableBufferPointer { tokens in
                counts.withUnsafeMutableBufferPointer { counts in
                    rejected.withUnsafeMutableBufferPointer { rejected in
                        var inner = batch.batch
                        let view = StridedView(base: advantages.baseAddress, dtype: .f64, rowStride: perRow ? 0 : gridStride, colStride: 1)
                        if perRow { inner.rowAdvantages = view } else { inner.advantages = view }
                        let outputs = MaskOutputs(keepRow: OutView(base: keepRow.baseAddress),
                                                  keepToken: OutView(base: tokens.baseAddress, rowStride: gridStride, colStride: 1),
                                                  rejected: rejected.baseAddress, advantageCounts: counts.baseAddress)
                        return TRMaskKernels.trustRegionMask(inner, criteria: criteria, options: options, outputs: outputs)
                    }
                }
            }
        }
    }
    try TRMaskError.check(status, argument: status == .badAdvantageRule ? "rule" : (status == .needsAdvantages ? "advantages" : nil))
    return AdvantageMaskResult(keepToken: tokens.map { $0 != 0 }, keepRow: keepRow.map { $0 != 0 },
                               maskedUpper: Int(counts[0]), maskedLower: Int(counts[1]), maskedPositive: Int(counts[2]),
                               maskedNegative: Int(counts[3]), rowsRejected: Int(counts[4]))
}

/// What `groupAdvantages` returns (semantics §4.10): per row, the advantage and its group's voter
/// count, mean and std; and the batch's counts.
public struct GroupAdvantageResult: Equatable, Sendable {
    public var advantages: [Float]
    public var voters: [Int]
    public var mean: [Double]
    public var std: [Double]
    public var summary: GroupSummary
}

/// GRPO advantages where only kept rows with a finite reward vote (semantics §4.10). `keep` nil =
/// every row. Throws `.badSize` naming the argument whose length differs from `groupIDs`'.
public func groupAdvantages(groupIDs: [Int64], rewards: [Double], keep: [Bool]? = nil, normalizeStd: Bool = true,
                            eps: Double = 1e-6, singleton: SingletonRule = .zero) throws(TRMaskError) -> GroupAdvantageResult {
    let rows = groupIDs.count
    guard rewards.count == rows else { throw TRMaskError(.badSize, argument: "rewards") }
    if let keep, keep.count != rows { throw TRMaskError(.badSize, argument: "keep") }
    let keepBytes = keep.map { $0.map { UInt8($0 ? 1 : 0) } }
    var advantages = [Float](repeating: 0, count: rows)
    var voters = [Int64](repeating: 0, count: rows)
    var mean = [Double](repeating: 0, count: rows)
    var std = [Double](repeating: 0, count: rows)
    var summary = GroupSummary()
    let status = groupIDs.withUnsafeBufferPointer { ids in
        rewards.withUnsafeBufferPointer { rewards in
            (keepBytes ?? []).withUnsafeBufferPointer { keepBytes in
                advantages.withUnsafeMutableBufferPointer { advantages in
                    voters.withUnsafeMutableBufferPointer { voters in
                        mean.withUnsafeMutableBufferPointer { mean in
                            std.withUnsafeMutableBufferPointer { std in
                                let inputs = GroupInputs(
                                    rows: rows, group: StridedView(base: ids.baseAddress, dtype: .i64),
                                    reward: StridedView(base: rewards.baseAddress, dtype: .f64),
                                    keep: keep == nil ? nil : StridedView(base: keepBytes.baseAddress, dtype: .u8),
                                    normalizeStd: normalizeStd, eps: eps, singleton: singleton)
                                let outputs = GroupOutputs(advantages: OutView(base: advantages.baseAddress), voters: OutView(base: voters.baseAddress),
                                                           mean: OutView(base: mean.baseAddress), std: OutView(base: std.baseAddress))
                                return TRMaskKernels.groupAdvantages(inputs, outputs: outputs, summary: &summary)
                            }
                        }
                    }
                }
            }
        }
    }
    try TRMaskError.check(status, argument: status == .badOption ? "eps" : nil)
    return GroupAdvantageResult(advantages: advantages, voters: voters.map { Int($0) }, mean: mean, std: std, summary: summary)
}
