#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// GRPO advantages over the rows that vote (SPEC §4.10): rejected rows (and rows with a
/// non-finite reward) leave their group's baseline (verl #6452, NeMo-RL #4160).

/// What a group with a single voter gives; raw values are the header's `TRM_SINGLETON_*`.
public enum SingletonRule: Int32, Sendable, CaseIterable {
    /// 0 (NeMo-RL).
    case zero = 0
    /// verl's rule: `r / (1 + eps)` with the std normalisation, `r` without.
    case raw = 1
}

/// The inputs of `groupAdvantages`: `[rows]` views (`colStride`; `rowStride` must be 0).
public struct GroupInputs: @unchecked Sendable {
    public var rows: Int
    /// Group ids, I32/I64, any values in any order.
    public var group: StridedView
    /// Rewards, any float dtype.
    public var reward: StridedView
    /// Nonzero = the row is kept (`keep_row`), any dtype; nil = every row.
    public var keep: StridedView?
    public var normalizeStd: Bool
    /// Added to the std before dividing: finite, >= 0.
    public var eps: Double
    public var singleton: SingletonRule

    public init(rows: Int, group: StridedView, reward: StridedView, keep: StridedView? = nil, normalizeStd: Bool = true,
                eps: Double = 1e-6, singleton: SingletonRule = .zero) {
        self.rows = rows
        self.group = group
        self.reward = reward
        self.keep = keep
        self.normalizeStd = normalizeStd
        self.eps = eps
        self.singleton = singleton
    }
}

/// Where `groupAdvantages` writes: `[rows]` outputs (`rowStride`), each optional.
public struct GroupOutputs: @unchecked Sendable {
    /// float32: the advantage; 0 for rows that do not vote.
    public var advantages: OutView<Float>
    /// int64: the number of voters in the row's group.
    public var voters: OutView<Int64>
    /// float64: the row's group mean over its voters (NaN without voters) and std (sample std,
    /// `n - 1`; NaN with fewer than two voters).
    public var mean: OutView<Double>
    public var std: OutView<Double>

    public init(advantages: OutView<Float> = .absent, voters: OutView<Int64> = .absent, mean: OutView<Double> = .absent,
                std: OutView<Double> = .absent) {
        self.advantages = advantages
        self.voters = voters
        self.mean = mean
        self.std = std
    }
}

/// Counts over the batch.
public struct GroupSummary: Sendable, Equatable {
    public var groups = 0
    public var groupsWithoutVoters = 0
    public var groupsWithOneVoter = 0
    /// Kept rows whose reward is NaN or infinite (they do not vote).
    public var rowsNonfiniteReward = 0

    public init() {}
}

/// Validates, then writes the advantages of SPEC §4.10. Rows are ordered by (group id, row) with
/// a sort (no memory proportional to the ids' range), and each group is reduced in row order in
/// float64, so the result does not depend on anything but the inputs (and no threads are used:
/// the work is O(B log B) on B rows). Returns `.ok` with every output written and `summary` set,
/// or the first problem found with nothing written.
public func groupAdvantages(_ inputs: GroupInputs, outputs: GroupOutputs, summary: inout GroupSummary) -> Status {
    let status = validateGroups(inputs, outputs)
    guard status == .ok else { return status }
    let n = inputs.rows
    var result = GroupSummary()
    if n == 0 {
        summary = result
        return .ok
    }
    // malloc, not Swift's allocation (which aborts when memory runs out): a refusal is a status.
    guard let raw = malloc(n * MemoryLayout<Int>.stride) else { return .tooLarge }  // n * 8 fits: validated
    defer { free(raw) }
    var order = UnsafeMutableBufferPointer(start: raw.bindMemory(to: Int.self, capacity: n), count: n)
    for row in 0..<n { order[row] = row }
    let id = { (row: Int) in inputs.group.index(row) }
    order.sort { id($0) < id($1) || (id($0) == id($1) && $0 < $1) }
    let reward = { (row: Int) in loadDouble(inputs.reward.address(row: 0, col: row), inputs.reward.dtype) }
    let votes = { (row: Int) in (inputs.keep.map { $0.isNonzero(row) } ?? true) && reward(row).isFinite }
    var start = 0
    while start < n {
        var end = start + 1
        while end < n && id(order[end]) == id(order[start]) { end += 1 }
        let members = UnsafeMutableBufferPointer(rebasing: order[start..<end])
        reduceGroup(members, inputs: inputs, outputs: outputs, reward: reward, votes: votes, summary: &result)
        start = end
    }
    summary = result
    return .ok
}

/// One group: its voters' mean and std in row order (float64), then every member's outputs.
private func reduceGroup(_ members: UnsafeMutableBufferPointer<Int>, inputs: GroupInputs, outputs: GroupOutputs,
                         reward: (Int) -> Double, votes: (Int) -> Bool, summary: inout GroupSummary) {
    // `members` is in row order within the group (the sort's tie-break).
    var voters = 0
    var sum = 0.0
    for row in members {
        if votes(row) {
            voters += 1
            sum += reward(row)
        } else if inputs.keep.map({ $0.isNonzero(row) }) ?? true {
            summary.rowsNonfiniteReward += 1
        }
    }
    let mean = voters > 0 ? sum / Double(voters) : .nan
    var squares = 0.0
    for row in members where votes(row) {
        let d = reward(row) - mean
        squares += d * d
    }
    let std = voters > 1 ? (squares / Double(voters - 1)).squareRoot() : .nan
    summary.groups += 1
    if voters == 0 { summary.groupsWithoutVoters += 1 }
    if voters == 1 { summary.groupsWithOneVoter += 1 }
    for row in members {
        var advantage = 0.0
        if votes(row) {
            let r = reward(row)
            if voters >= 2 {
                advantage = inputs.normalizeStd ? (r - mean) / (std + inputs.eps) : r - mean
            } else if inputs.singleton == .raw {
                advantage = inputs.normalizeStd ? r / (1 + inputs.eps) : r
            }
        }
        if outputs.advantages.base != nil { outputs.advantages.store(Float(advantage), row: row) }
        if outputs.voters.base != nil { outputs.voters.store(Int64(voters), row: row) }
        if outputs.mean.base != nil { outputs.mean.store(mean, row: row) }
        if outputs.std.base != nil { outputs.std.store(std, row: row) }
    }
}

/// Sizes, dtypes, strides and extents of every array; eps finite and >= 0; outputs apart from
/// each other and from the inputs; `rows * 8` bytes of working memory within the shared limit.
private func validateGroups(_ inputs: GroupInputs, _ outputs: GroupOutputs) -> Status {
    guard inputs.rows >= 0 else { return .badSize }
    guard scratchBytes(inputs.rows, of: Int.self) != nil else { return .tooLarge }
    guard inputs.eps.isFinite, inputs.eps >= 0 else { return .badOption }
    return withExtentList { taken in
        func input(_ view: StridedView, accepts: (DType) -> Bool) -> Status {
            guard accepts(view.dtype) else { return .badDType }
            guard view.rowStride == 0 else { return .badStride }
            return checkInput(base: view.base, dims: .oneD(inputs.rows, view.colStride), elementSize: view.dtype.size, into: &taken)
        }
        var status = input(inputs.group, accepts: \.isIndex)
        if status == .ok { status = input(inputs.reward, accepts: \.isFloat) }
        if status == .ok, let keep = inputs.keep { status = input(keep, accepts: { _ in true }) }
        func output<Element>(_ out: OutView<Element>) -> Status {
            guard out.base == nil || out.colStride == 0 else { return .badStride }
            return checkOutput(out, .oneD(inputs.rows, out.rowStride), taken: &taken)
        }
        if status == .ok { status = output(outputs.advantages) }
        if status == .ok { status = output(outputs.voters) }
        if status == .ok { status = output(outputs.mean) }
        if status == .ok { status = output(outputs.std) }
        return status
    }
}
