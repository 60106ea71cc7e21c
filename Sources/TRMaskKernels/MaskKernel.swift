/// The trust region mask (SPEC §3-§4): per-row counts and statistics, row and token decisions,
/// per-criterion rejections, in one pass over the batch.

/// Where the mask kernel writes; every output is optional.
public struct MaskOutputs: @unchecked Sendable {
    /// `[rows]`: 1 = the row passes every row criterion.
    public var keepRow: OutView<UInt8>
    /// `[rows]`: counted tokens.
    public var count: OutView<Int64>
    /// `[rows]`: valid tokens whose stream value is NaN or ±inf.
    public var nonfinite: OutView<Int64>
    /// `[rows, rowCriteria]`: each row criterion's statistic.
    public var rowStats: OutView<Float>
    /// Token grid (padded `[rows, cols]`; packed `[cols]` with `rowStride` 0).
    public var keepToken: OutView<UInt8>
    /// `[criteria]`, contiguous.
    public var rejected: UnsafeMutablePointer<Int64>?
    /// Token grid of importance weights under `weightRule` (SPEC §5).
    public var weights: OutView<Float>
    public var weightRule: WeightRule
    /// The batch metrics (SPEC §9).
    public var metrics: UnsafeMutablePointer<MaskMetrics>?
    /// `[5]`, contiguous: the advantage rule's counts (SPEC §4.8): tokens masked on the upper
    /// side, on the lower side, with `A > 0`, with `A < 0`; rows the sequence rule rejects.
    public var advantageCounts: UnsafeMutablePointer<Int64>?

    public init(keepRow: OutView<UInt8> = .absent, count: OutView<Int64> = .absent,
                nonfinite: OutView<Int64> = .absent, rowStats: OutView<Float> = .absent,
                keepToken: OutView<UInt8> = .absent, rejected: UnsafeMutablePointer<Int64>? = nil,
                weights: OutView<Float> = .absent, weightRule: WeightRule = WeightRule(level: .token, mode: .truncate),
                metrics: UnsafeMutablePointer<MaskMetrics>? = nil, advantageCounts: UnsafeMutablePointer<Int64>? = nil) {
        self.keepRow = keepRow
        self.count = count
        self.nonfinite = nonfinite
        self.rowStats = rowStats
        self.keepToken = keepToken
        self.rejected = rejected
        self.weights = weights
        self.weightRule = weightRule
        self.metrics = metrics
        self.advantageCounts = advantageCounts
    }
}

/// Validates every argument, then computes the mask. Returns `.ok` with every requested output
/// written, or the first problem found with nothing written.
public func trustRegionMask(_ batch: Batch, criteria: [Criterion], options: ReductionOptions, outputs: MaskOutputs) -> Status {
    let status = validateMask(batch, criteria: criteria, options: options, outputs: outputs)
    guard status == .ok else { return status }
    var records: MetricRecords?
    if outputs.metrics != nil {
        guard let allocated = MetricRecords(rows: batch.rows, criteria: criteria) else { return .tooLarge }
        records = allocated
    }
    defer { records?.deallocate() }
    var scan = MaskScan(batch: batch, criteria: criteria, options: options, outputs: outputs, givenKeepRow: nil, records: records)
    dispatchReader(batch, to: &scan)
    if let records {
        var metrics = records.reduce(criteria: criteria, source: batch.source)
        metrics.positions = batch.gridCount
        outputs.metrics?.pointee = metrics
    }
    return .ok
}

/// Importance weights (SPEC §5) alone, for a given row decision (`keepRow`, a byte view of
/// `[rows]`; nil = every row kept): `out` gets the weights of `rule`, 0 on positions that are not
/// counted and on rejected rows. An advantage rule in `options` is validated and not applied.
public func importanceWeights(_ batch: Batch, options: ReductionOptions, rule: WeightRule, keepRow: StridedView?,
                              out: OutView<Float>) -> Status {
    let outputs = MaskOutputs(weights: out, weightRule: rule)
    let status = validateWeights(batch, options: options, keepRow: keepRow, outputs: outputs)
    guard status == .ok else { return status }
    // The advantage rule is validated, not applied: the row decision is the given one, and token
    // rules never zero weights (as in `trustRegionMask`'s weights).
    var weightOptions = options
    weightOptions.advantageRule = nil
    var scan = MaskScan(batch: batch, criteria: [], options: weightOptions, outputs: outputs, givenKeepRow: keepRow, records: nil)
    dispatchReader(batch, to: &scan)
    return .ok
}

/// The token keep mask for a given row decision (`keepRow`, a byte view of `[rows]`), without
/// the row reductions. Row criteria are ignored.
public func tokenKeep(_ batch: Batch, criteria: [Criterion], options: ReductionOptions, keepRow: StridedView, out: OutView<UInt8>) -> Status {
    let outputs = MaskOutputs(keepToken: out)
    let status = validateTokenKeep(batch, criteria: criteria, options: options, keepRow: keepRow, outputs: outputs)
    guard status == .ok else { return status }
    var scan = MaskScan(batch: batch, criteria: criteria.filter { !$0.isRowCriterion }, options: options,
                        outputs: outputs, givenKeepRow: keepRow, records: nil)
    dispatchReader(batch, to: &scan)
    return .ok
}

/// A kernel that runs with whichever reader fits the batch.
protocol ReaderConsumer {
    mutating func run<Reader: RowReader>(_ reader: Reader.Type)
}

/// Picks the fastest reader that can read every row of `batch`: unit-stride vector loads for every
/// dtype and the common mixed pairs (a bfloat16 or float16 trainer against a float32 rollout),
/// strided loads for one dtype on both sides, and a per-element gather for everything else.
func dispatchReader<Consumer: ReaderConsumer>(_ batch: Batch, to consumer: inout Consumer) {
    func attempt<Reader: RowReader>(_ reader: Reader.Type) -> Bool {
        guard Reader.accepts(batch) else { return false }
        consumer.run(Reader.self)
        return true
    }
    if batch.source.secondary != nil {
        if attempt(UnitReader<Float, Float, Paired>.self) || attempt(UnitReader<BFloat16, BFloat16, Paired>.self)
            || attempt(UnitReader<Half, Half, Paired>.self) || attempt(UnitReader<Double, Double, Paired>.self)
            || attempt(UnitReader<BFloat16, Float, Paired>.self) || attempt(UnitReader<Float, BFloat16, Paired>.self)
            || attempt(UnitReader<Half, Float, Paired>.self) || attempt(UnitReader<Float, Half, Paired>.self)
            || attempt(StridedReader<Float, Paired>.self) || attempt(StridedReader<BFloat16, Paired>.self)
            || attempt(StridedReader<Half, Paired>.self) || attempt(StridedReader<Double, Paired>.self) { return }
    } else {
        if attempt(UnitReader<Float, Float, Single>.self) || attempt(UnitReader<BFloat16, BFloat16, Single>.self)
            || attempt(UnitReader<Half, Half, Single>.self) || attempt(UnitReader<Double, Double, Single>.self)
            || attempt(StridedReader<Float, Single>.self) || attempt(StridedReader<BFloat16, Single>.self)
            || attempt(StridedReader<Half, Single>.self) || attempt(StridedReader<Double, Single>.self) { return }
    }
    consumer.run(GatherReader.self)
}

/// Float64 bounds `[lo, hi]` rounded inward to float32: for float32 values, `lo' <= v <= hi'`
/// exactly when `lo <= Double(v) <= hi`.
struct FloatBand {
    let lo: Lanes
    let hi: Lanes

    init(lo: Double, hi: Double) {
        var low = Float(lo)
        if Double(low) < lo { low = low.nextUp }
        var high = Float(hi)
        if Double(high) > hi { high = high.nextDown }
        self.lo = Lanes(repeating: low)
        self.hi = Lanes(repeating: high)
    }

    @inline(__always)
    func contains(_ v: Lanes) -> LaneMask { laneMask(v .>= lo) & laneMask(v .<= hi) }
}

/// A token criterion: its estimator and its bounds as a `FloatBand`.
struct TokenBand {
    var estimator: Estimator
    var band: FloatBand

    init(_ criterion: Criterion) {
        estimator = criterion.estimator
        band = FloatBand(lo: criterion.lo, hi: criterion.hi)
    }

    @inline(__always)
    func passes(_ value: Lanes) -> LaneMask { band.contains(estimate(estimator, value)) }
}

/// Writes one row of a token-grid output.
struct GridRow<Element> {
    let base: UnsafeMutablePointer<Element>
    let stride: Int

    init(_ out: OutView<Element>, row: Int, start: Int, layout: Layout) {
        let origin = layout == .padded ? row &* out.rowStride : start &* out.colStride
        base = out.base.unsafelyUnwrapped + origin
        stride = out.colStride
    }

    @inline(__always)
    func fill(_ value: Element, from: Int, to end: Int) {
        var p = from
        while p < end {
            base[p &* stride] = value
            p += 1
        }
    }
}

extension GridRow where Element == UInt8 {
    @inline(__always)
    func store(_ keep: LaneMask, at p: Int, count: Int) {
        for lane in 0..<count { base[(p &+ lane) &* stride] = keep[lane] != 0 ? 1 : 0 }
    }
}

/// Where the small-chunk loop writes `keep_token` for a row without token criteria (each valid
/// lane is kept until the row's decision, which clears a rejected row afterwards): nowhere, or a
/// row of the output. A type parameter, so the loop without the output has no trace of it.
protocol KeepSink {
    func store(_ valid: LaneMask, at p: Int)
}

struct NoKeepSink: KeepSink {
    @inline(__always)
    func store(_ valid: LaneMask, at p: Int) {}
}

extension GridRow: KeepSink where Element == UInt8 {
    /// Eight whole lanes: one 8-byte store when the row is contiguous.
    @inline(__always)
    func store(_ valid: LaneMask, at p: Int) {
        guard stride == 1 else { return store(valid, at: p, count: chunkWidth) }
        UnsafeMutableRawPointer(base + p).storeBytes(of: keepBytes(valid), as: UInt64.self)
    }
}

struct MaskScan: ReaderConsumer {
    let batch: Batch
    let criteria: [Criterion]
    let rowCriteria: [Criterion]
    let tokenBands: [TokenBand]
    let plan: ScanPlan
    let rejectEmpty: Bool
    let workers: Int
    let outputs: MaskOutputs
    let givenKeepRow: StridedView?
    let records: MetricRecords?
    /// Where a partials scan (`rowPartials`) writes each row's partials instead of deciding it.
    let partials: RowPartials?
    /// Work after the first pass over a row: LN-TRM statistics, weights.
    let secondPass: Bool
    /// The 2026 token rules, judged in the row scan (binary estimators, the advantage token rule;
    /// SPEC §4.7, §4.8); nil when the call has none.
    let rules: RulesPass?
    /// The advantage sequence rule's limit (SPEC §4.8), when the call decides rows with one.
    let sequenceLimit: Double?

    init(batch: Batch, criteria: [Criterion], options: ReductionOptions, outputs: MaskOutputs, givenKeepRow: StridedView?,
         records: MetricRecords? = nil, partials: RowPartials? = nil) {
        self.batch = batch
        self.criteria = criteria
        rowCriteria = criteria.filter { $0.isRowCriterion }
        tokenBands = criteria.filter { !$0.isRowCriterion }.map(TokenBand.init)
        var extraSums: SumSet = records == nil ? [] : SumSet.metrics(batch).union(SumSet(criteria.map { SumSet($0.estimator) }))
        if outputs.weights.base != nil && outputs.weightRule.level != .token { extraSums.insert(.linear) }
        if options.advantageRule?.sequenceLimit != nil { extraSums.insert(.linear) }  // the sequence rule's mean
        plan = ScanPlan(criteria: criteria, options: options, extraSums: extraSums)
        rejectEmpty = options.rejectEmpty
        workers = workerCount(threads: options.threads, rows: batch.rows, positions: batch.gridCount)
        self.outputs = outputs
        self.givenKeepRow = givenKeepRow
        self.records = records
        self.partials = partials
        secondPass = outputs.weights.base != nil || criteria.contains { $0.aggregation == .lnTRM }
        rules = RulesPass(criteria: criteria, options: options, metrics: records != nil)
        sequenceLimit = givenKeepRow == nil ? options.advantageRule?.sequenceLimit : nil
    }

    mutating func run<Reader: RowReader>(_ reader: Reader.Type) {
        if plan.valleyServes(criteria) {
            run(Reader.self, ValleyScan.self)
        } else {
            run(Reader.self, GeneralScan.self)
        }
    }

    private func run<Reader: RowReader, Shape: ScanShape>(_ reader: Reader.Type, _ shape: Shape.Type) {
        // Column-major batches go in tiles of up to `columnTileRows` rows (`scanColumns`); the rows left over,
        // and every other layout, one row at a time. Work units: tiles first, then single rows.
        let columnar = tokenBands.isEmpty && givenKeepRow == nil && !secondPass
            && rules == nil && columnScanServes(batch)
        let laneGroups = columnar ? batch.rows / chunkWidth : 0
        let tiles = (laneGroups * chunkWidth + columnTileRows - 1) / columnTileRows
        let firstSingle = laneGroups * chunkWidth
        // Rejections per worker: row criteria first, then token criteria, then the advantage
        // rule's counts; summed in worker order.
        let perWorker = rowCriteria.count + tokenBands.count + (sequenceLimit != nil || rules?.advantage != nil ? AdvantageCount.slots : 0)
        var rejected = [Int](repeating: 0, count: Swift.max(1, workers * perWorker))
        rejected.withUnsafeMutableBufferPointer { counters in
            let counters = UncheckedBuffer(counters)
            forEachRowBlock(rows: tiles + batch.rows - firstSingle, workers: workers) { worker, units in
                let mine = UnsafeMutableBufferPointer(rebasing: counters.buffer[(worker * perWorker)..<((worker + 1) * perWorker)])
                for unit in units {
                    if unit < tiles {
                        let firstRow = unit * columnTileRows
                        let groups = Swift.min(columnTileRows, firstSingle - firstRow) / chunkWidth
                        if batch.source.secondary != nil {
                            scanColumns(Paired.self, Shape.self, firstRow: firstRow, groups: groups, rejected: mine)
                        } else {
                            scanColumns(Single.self, Shape.self, firstRow: firstRow, groups: groups, rejected: mine)
                        }
                    } else {
                        scanRow(Reader.self, Shape.self, firstSingle + unit - tiles, rejected: mine)
                    }
                }
            }
        }
        clearPackedGaps()
        if let counts = outputs.advantageCounts {
            let base = rowCriteria.count + tokenBands.count
            for slot in 0..<AdvantageCount.slots {
                counts[slot] = perWorker > base ? Int64((0..<workers).reduce(0) { $0 + rejected[$1 * perWorker + base + slot] }) : 0
            }
        }
        guard let out = outputs.rejected else { return }
        var next = (row: 0, token: rowCriteria.count)
        for (index, criterion) in criteria.enumerated() {
            let slot: Int
            if criterion.isRowCriterion {
                slot = next.row
                next.row += 1
            } else {
                slot = next.token
                next.token += 1
            }
            out[index] = Int64((0..<workers).reduce(0) { $0 + rejected[$1 * perWorker + slot] })
        }
    }

    private func scanRow<Reader: RowReader, Shape: ScanShape>(_ reader: Reader.Type, _ shape: Shape.Type, _ row: Int,
                                                              rejected: UnsafeMutableBufferPointer<Int>) {
        let span = batch.rowSpan(row)
        let n = batch.scanCount(row, span: span.count)
        let decided = givenKeepRow.map { $0.isNonzero(row) }
        let tokens = outputs.keepToken.base == nil ? nil : GridRow(outputs.keepToken, row: row, start: span.start, layout: batch.layout)
        var summary = RowSummary()
        var binary = BinaryRowStats()
        var passingTokens = 0  // counted tokens that pass every token criterion
        if n > 0 && decided != false {
            // 2026 rules: judged on each chunk the scan reads (`judgeTokens`).
            let rulesRow = rules?.row(batch, row: row, start: span.start)
            let source = Reader(batch, row: row, start: span.start, count: n)
            // Token criteria and the 2026 rules judge each chunk; keep_token alone is written by
            // the small-chunk loop.
            let judging = !tokenBands.isEmpty || rulesRow != nil
            let tokenWork = judging || tokens != nil
            let plainChunks = source.hasPlainChunks
            let plan = self.plan
            var lanes = LaneStats()
            var p = 0
            let fast = plainChunks && !judging
            let rulesShortcut = plainChunks && rulesLoopServes(rulesRow, tokens: tokens) ? rulesRow?.rules.shortcut : nil
            var group = GroupSums()
            while p < n {
                let blockEnd = Swift.min(n, p + LaneStats.blockLength)
                // Groups are aligned to multiples of 64 positions from the row start.
                let fullGroupsEnd = blockEnd / GroupSums.width * GroupSums.width
                while p < blockEnd {
                    if fast && p < fullGroupsEnd {
                        if let tokens {
                            (lanes, group, p) = smallChunks(source, from: p, to: fullGroupsEnd, plan: plan, (lanes, group), Shape.self, tokens)
                        } else {
                            (lanes, group, p) = smallChunks(source, from: p, to: fullGroupsEnd, plan: plan, (lanes, group), Shape.self,
                                                            NoKeepSink())
                        }
                        if p == blockEnd { break }
                    } else if let rulesRow, let rulesShortcut, p < fullGroupsEnd {
                        let passing: Int
                        (lanes, group, p, passing) = rulesChunks(rulesRow, rulesShortcut, from: p, to: fullGroupsEnd, tokens: tokens?.base,
                                                                 rejected: rejected, (lanes, group), Shape.self)
                        passingTokens += passing
                        if p == blockEnd { break }
                    }
                    // The rest of the group: rare chunks, partial groups, token work, readers
                    // without plain chunks. Small chunks are added exactly as `smallChunks` adds
                    // them.
                    let groupEnd = Swift.min(blockEnd, (p / GroupSums.width + 1) * GroupSums.width)
                    while p < groupEnd {
                        let width = Swift.min(chunkWidth, groupEnd - p)
                        let (raw, valid) = width == chunkWidth ? source.chunk(at: p) : source.partialChunk(at: p, count: width)
                        let (value, tokenValid) = lanes.add(raw, valid, plan: plan, group: &group, Shape.self)
                        if tokenWork {
                            passingTokens += judgeTokens(value, tokenValid, at: p, width: width, tokens, rejected, rulesRow, &binary)
                        }
                        p += width
                    }
                    lanes.flush(group, plan: plan, Shape.self)
                    group = GroupSums()
                }
                summary.flushCounters(&lanes)
            }
            summary.finish(lanes)
        }
        let judged = !tokenBands.isEmpty || rules?.decidesTokens == true  // passingTokens was counted
        let keep = decided ?? decideRow(row, summary, binary, passingTokens: judged ? passingTokens : summary.counted,
                                        rejected: rejected) { criterion in
            lengthNeutralStatistic(Reader(batch, row: row, start: span.start, count: n), scanned: n, tokens: summary.counted,
                                   criterion: criterion, plan: plan)
        }
        if let tokens {
            tokens.fill(0, from: keep ? n : 0, to: span.count)
        }
        if outputs.weights.base != nil {
            writeWeights(Reader.self, row: row, span: span, scanned: n, keep: keep, summary: summary)
        }
    }

    /// Token criteria on one chunk: counts each criterion's rejections, writes the keep lanes and
    /// returns how many lanes pass. The 2026 rules (`rules`: binary criteria, the advantage rule,
    /// binary row statistics into `binary`) are judged on the same chunk.
    @inline(never)
    private func judgeTokens(_ value: Lanes, _ tokenValid: LaneMask, at p: Int, width: Int, _ tokens: GridRow<UInt8>?,
                             _ rejected: UnsafeMutableBufferPointer<Int>, _ rules: RulesRow?, _ binary: inout BinaryRowStats) -> Int {
        var keep = tokenValid
        if rules != nil { keep &= rules.unsafelyUnwrapped.judge(at: p, width: width, stats: &binary, rejected: rejected) }  // no copy of the row's rules
        for (index, band) in tokenBands.enumerated() where !band.estimator.isBinary {
            let pass = band.passes(value)
            let failed = tokenValid & ~pass
            if anySet(failed) { rejected[rowCriteria.count + index] += laneCount(failed) }
            keep &= pass
        }
        tokens?.store(keep, at: p, count: width)
        return laneCount(keep)  // lanes past `width` are invalid
    }

    /// Evaluates the row criteria, writes the row outputs and the metrics record, and returns the
    /// decision. `passingTokens`: counted tokens that pass every token criterion.
    /// `lengthNeutral`: the LN-TRM statistic of a criterion (a second pass over the row). A
    /// partials scan writes the row's partials instead (and keeps every row: nothing is decided).
    func decideRow(_ row: Int, _ summary: RowSummary, _ binary: BinaryRowStats, passingTokens: Int,
                   rejected: UnsafeMutableBufferPointer<Int>, lengthNeutral: (Criterion) -> Float) -> Bool {
        if let partials {
            partials.store(row, summary, nanPolicy: plan.nanPolicy)
            return true
        }
        let nanPolicy = plan.nanPolicy
        var rowRule = true
        if let sequenceLimit, !passesSequenceRule(row, summary, limit: sequenceLimit) {
            rowRule = false
            rejected[rowCriteria.count + tokenBands.count + AdvantageCount.rows] += 1
        }
        let statistics = records.map { $0.statistics.baseAddress.unsafelyUnwrapped + row * $0.rowCriteria }
        let keep = judgeRow(row, counted: summary.counted, nonfinite: summary.nonfinite, rowCriteria: rowCriteria,
                            rejectEmpty: rejectEmpty, rowRule: rowRule, outputs: outputs, rejected: rejected) { column, criterion in
            if criterion.estimator.isBinary {
                let statistic = binary.statistic(criterion, nanPolicy: nanPolicy, deltaNaNs: summary.nans)
                statistics?[column] = statistic
                return (statistic, criterion.passes(statistic))
            }
            var statistic = summary.statistic(criterion, nanPolicy: nanPolicy)
            if criterion.aggregation == .lnTRM && !statistic.isNaN { statistic = lengthNeutral(criterion) }
            statistics?[column] = statistic
            if criterion.aggregation == .geo {  // SPEC §4.9: decided on the float64 log mean
                return (statistic, criterion.passesInLogSpace(summary.logMean(nanPolicy: nanPolicy)))
            }
            return (statistic, criterion.passes(statistic))
        }
        if let records {
            records.record(row: row, summary, binary, k3Clamped: clampedK3Total(row, summary), keep: keep,
                           keptTokens: passingTokens, nanPolicy: nanPolicy)
        }
        return keep
    }

    /// Packed token grids: positions before the first row and after the last are outside every
    /// row, so their keep_token and weight are 0.
    private func clearPackedGaps() {
        guard batch.layout == .packed else { return }
        let first = batch.rows > 0 ? batch.offsets.unsafelyUnwrapped.index(0) : batch.cols
        let last = batch.rows > 0 ? batch.offsets.unsafelyUnwrapped.index(batch.rows) : batch.cols
        func clear<Element>(_ out: OutView<Element>, _ zero: Element) {
            guard out.base != nil else { return }
            let grid = GridRow(out, row: 0, start: 0, layout: .packed)
            grid.fill(zero, from: 0, to: first)
            grid.fill(zero, from: last, to: batch.cols)
        }
        clear(outputs.keepToken, 0)
        clear(outputs.weights, 0)
    }
}

/// Decides one row from its count and its row criteria's statistics (SPEC §3, §4.1): the rule the
/// scan and the decision from merged partials share. A row without counted tokens has statistics 0
/// and is kept unless `rejectEmpty` (no criterion is charged with it); any other row is kept iff
/// every criterion passes, inclusive bounds, a NaN statistic failing (fail closed). Writes the
/// row's outputs, counts each criterion's rejections, and returns the decision. `rowRule`: the
/// advantage sequence rule's decision (SPEC §4.8), ANDed in (its rejections are counted by the
/// caller); `statistic` gives each criterion's statistic and whether it passes.
@inline(__always)
func judgeRow(_ row: Int, counted: Int, nonfinite: Int, rowCriteria: [Criterion], rejectEmpty: Bool, rowRule: Bool = true,
              outputs: MaskOutputs,
              rejected: UnsafeMutableBufferPointer<Int>,
              statistic: (_ column: Int, _ criterion: Criterion) -> (value: Float, passes: Bool)) -> Bool {
    var keep = true
    if counted == 0 {
        keep = !rejectEmpty
        for column in rowCriteria.indices where outputs.rowStats.base != nil {
            outputs.rowStats.store(0, row: row, col: column)
        }
    } else {
        for (column, criterion) in rowCriteria.enumerated() {
            let (value, passes) = statistic(column, criterion)
            if outputs.rowStats.base != nil { outputs.rowStats.store(value, row: row, col: column) }
            if !passes {
                keep = false
                rejected[column] += 1
            }
        }
    }
    keep = keep && rowRule
    if outputs.keepRow.base != nil { outputs.keepRow.store(keep ? 1 : 0, row: row) }
    if outputs.count.base != nil { outputs.count.store(Int64(counted), row: row) }
    if outputs.nonfinite.base != nil { outputs.nonfinite.store(Int64(nonfinite), row: row) }
    return keep
}

/// A buffer handed to worker threads that write disjoint parts of it.
struct UncheckedBuffer<Element>: @unchecked Sendable {
    let buffer: UnsafeMutableBufferPointer<Element>
    init(_ buffer: UnsafeMutableBufferPointer<Element>) { self.buffer = buffer }
}

/// How far ahead of the scan the hot loop asks for data (positions): about a microsecond of work,
/// more than a DRAM round trip, so a single thread keeps enough reads in flight.
let prefetchDistance = 2048

/// The hot loop of the row scan, over whole groups up to `end` (a group boundary): while every
/// chunk is small it adds it exactly as `LaneStats.add` and `LaneStats.flush` do. It stops at
/// `end` or at the first chunk that is not small (that group's partial sums left in `group`) and
/// returns the position. A function of its own with no calls inside and the accumulators passed by
/// value, so they live in registers (inlined into the row loop, which calls out on its rare paths,
/// LLVM keeps them on the stack).
@inline(never)
func smallChunks<Reader: RowReader, Shape: ScanShape, Sink: KeepSink>(_ source: Reader, from start: Int, to end: Int, plan: ScanPlan,
                                                                     _ state: (LaneStats, GroupSums), _ shape: Shape.Type,
                                                                     _ keep: Sink)
    -> (lanes: LaneStats, group: GroupSums, position: Int) {
    var (lanes, group) = state
    if !Shape.general {
        // A valley scan adds only k3 partials: the others are 0 at every step, and a fresh group
        // tells the compiler so (seven fewer accumulators to keep in registers).
        group = GroupSums()
        group.k3 = state.1.k3
    }
    var p = start
    while p < end {
        let (raw, valid) = source.plainChunk(at: p)
        guard LaneStats.isSmall(raw, valid, plan: plan) else { break }
        lanes.accumulate(ChunkTerms(small: raw, valid: valid), plan: plan, group: &group, allSmall: true, Shape.self)
        keep.store(valid, at: p)  // a small chunk's token lanes are its valid lanes (`LaneStats.add`)
        p &+= chunkWidth
        if p & (GroupSums.width - 1) == 0 {  // a group ends (the width is a power of two)
            lanes.flush(group, plan: plan, Shape.self)
            group = GroupSums()
            source.prefetchGroup(at: p &+ prefetchDistance)
        }
    }
    return (lanes, group, p)
}
