/// Column-major batches (the row stride is 1, as in `x.T` of a `[T, B]` array): reading one row
/// at a time would touch a new cache line for every token. Here eight rows are the eight lanes
/// and the scan walks the positions, loading eight neighbouring rows at once.
///
/// Each row's statistics are accumulated exactly as the row scan does: position `p` feeds
/// position lane `p mod 8`, float32 partials over groups of 64 positions, float64 lanes combined
/// by the same tree. So the results are bit-identical to every other layout.

/// Whether the column scan serves a batch: padded float32 streams and a byte mask (or none), all
/// with row stride 1, at least one full group of eight rows, and positions countable exactly in
/// float32 lanes. Rows without positions never reach it: their arrays have no elements, so
/// their data may be NULL.
func columnScanServes(_ batch: Batch) -> Bool {
    guard batch.layout == .padded, batch.rows >= chunkWidth, batch.cols > 0, batch.cols < 1 << 24 else { return false }
    let views = [batch.source.primary, batch.source.secondary ?? batch.source.primary]
    guard views.allSatisfy({ $0.dtype == .f32 && $0.rowStride == 1 }) else { return false }
    guard let mask = batch.mask else { return true }
    return mask.dtype.isByteMask && mask.rowStride == 1
}

/// Eight consecutive rows of a column-major batch.
struct ColumnBlock<Kind: StreamKind> {
    let first: UnsafeRawPointer
    let second: UnsafeRawPointer
    let firstStride: Int
    let secondStride: Int
    let mask: UnsafeRawPointer?
    let maskStride: Int

    init(_ batch: Batch, firstRow: Int) {
        let primary = batch.source.primary
        let secondary = batch.source.secondary ?? primary
        first = primary.base.unsafelyUnwrapped + firstRow &* 4
        second = secondary.base.unsafelyUnwrapped + firstRow &* 4
        firstStride = primary.colStride &* 4
        secondStride = secondary.colStride &* 4
        mask = batch.mask.map { $0.base.unsafelyUnwrapped + firstRow }
        maskStride = batch.mask?.colStride ?? 0
    }

    /// Position `p` of the eight rows; lanes at or past their row's `limit` are invalid.
    @inline(__always)
    func load(_ p: Int, limit: Lanes) -> (Lanes, LaneMask) {
        let a = (first + p &* firstStride).loadUnaligned(as: Lanes.self)
        let value = Kind.paired ? a - (second + p &* secondStride).loadUnaligned(as: Lanes.self) : a
        var valid = laneMask(Lanes(repeating: Float(p)) .< limit)
        if let mask { valid &= byteMask((mask + p &* maskStride).loadUnaligned(as: SIMD8<UInt8>.self)) }
        return (value, valid)
    }
}

/// Rows per column tile: 128 lane groups of eight rows, so one position of a tile is 4 KiB of
/// contiguous bytes of each float32 input, and a tile walks memory in long sequential runs the
/// prefetchers follow (64-row tiles jump a cache line or two per position and were 4x slower).
/// The lane groups' hot state (counts, extremes, current partials) stays in L1 and L2.
let columnTileRows = 1024

/// One lane group's running state across a tile's positions.
struct ColumnLanes {
    var lanes = LaneStats()  // counts and extremes: lane = row
    var wide = InlineArray<8, WideSums>(repeating: WideSums())  // float64 sums per position lane
    var counts = (counted: SIMD8<Int>(), nonfinite: SIMD8<Int>(), nans: SIMD8<Int>())
    var keepBits = SIMD8<UInt64>()  // `ColumnKeep`: the current group's keep_token bits
}

extension MaskScan {
    /// Scans rows `firstRow ..< firstRow + groups * 8` of a column-major batch (`groups * 8` <=
    /// `columnTileRows`) and
    /// decides them. Each position is read for all the tile's rows at once (whole cache lines),
    /// updating every lane group's state, which stays in L1.
    func scanColumns<Kind: StreamKind, Shape: ScanShape>(_ kind: Kind.Type, _ shape: Shape.Type, firstRow: Int, groups: Int,
                                                           rejected: UnsafeMutableBufferPointer<Int>) {
        // Per lane group: the running state, and the float32 partials of the eight position lanes.
        withUnsafeTemporaryAllocation(of: ColumnLanes.self, capacity: groups) { states in
        withUnsafeTemporaryAllocation(of: GroupSums.self, capacity: groups * chunkWidth) { sums in
            sums.initialize(repeating: GroupSums())
            // Each row's positions to read (its length), as float lanes for the validity compare.
            var limits = InlineArray<128, Lanes>(repeating: Lanes())
            var blocks = InlineArray<128, ColumnBlock<Kind>>(repeating: ColumnBlock(batch, firstRow: firstRow))
            var end = 0
            for group in 0..<groups {
                for lane in 0..<chunkWidth {
                    let count = batch.scanCount(firstRow + group * chunkWidth + lane, span: batch.cols)
                    limits[group][lane] = Float(count)
                    end = Swift.max(end, count)
                }
                blocks[group] = ColumnBlock(batch, firstRow: firstRow + group * chunkWidth)
                (states.baseAddress.unsafelyUnwrapped + group).initialize(to: ColumnLanes())
            }
            let plan = self.plan
            let tokens = outputs.keepToken.base == nil ? nil : ColumnKeep(outputs.keepToken, firstRow: firstRow)
            var p = 0
            while p < end {
                let tileStart = p
                let tileEnd = Swift.min(end, p + GroupSums.width)
                while p < tileEnd {
                    let lane = p & (chunkWidth - 1)
                    for group in 0..<groups {
                        let (raw, valid) = blocks[group].load(p, limit: limits[group])
                        let (_, tokenValid) = states[group].lanes.add(raw, valid, plan: plan, group: &sums[group * chunkWidth + lane],
                                                                     Shape.self)
                        if tokens != nil { states[group].keepBits |= ColumnKeep.bits(tokenValid, at: p) }
                    }
                    p += 1
                }
                for group in 0..<groups {
                    if let tokens {
                        tokens.flush(states[group].keepBits, group: group, from: tileStart, to: tileEnd)
                        states[group].keepBits = SIMD8()
                    }
                    for lane in 0..<chunkWidth {
                        states[group].wide[lane].add(sums[group * chunkWidth + lane], plan: plan)
                        sums[group * chunkWidth + lane] = GroupSums()
                    }
                    if p % LaneStats.blockLength == 0 || p == end { states[group].flushCounts() }
                }
            }
            for group in 0..<groups {
                for lane in 0..<chunkWidth {
                    // No token criterion and no LN-TRM criterion reaches the column scan.
                    let row = firstRow + group * chunkWidth + lane
                    let summary = states[group].summary(lane)
                    let keep = decideRow(row, summary, BinaryRowStats(), passingTokens: summary.counted,
                                         rejected: rejected, lengthNeutral: { _ in .nan })
                    // keep_token holds the valid lanes of positions before `end`: clear a rejected
                    // row, and every row's positions past `end`.
                    if tokens != nil {
                        GridRow(outputs.keepToken, row: row, start: 0, layout: .padded).fill(0, from: keep ? end : 0, to: batch.cols)
                    }
                }
            }
        }
        }
    }
}

/// keep_token of a column tile's rows. Writing eight rows' bytes per position would touch a
/// cache line of every row per position (and rows a power-of-two apart share L1 sets): instead
/// each lane group collects a bit per position and row (`ColumnLanes.keepBits`), and each row's
/// bits of a 64-position group are written at the group's end as consecutive bytes.
struct ColumnKeep {
    let first: UnsafeMutablePointer<UInt8>
    let rowStride: Int
    let colStride: Int

    init(_ out: OutView<UInt8>, firstRow: Int) {
        first = out.base.unsafelyUnwrapped + firstRow &* out.rowStride
        rowStride = out.rowStride
        colStride = out.colStride
    }

    /// Bit `p mod 64` of each row's word: whether position `p` is a kept token of that row.
    @inline(__always)
    static func bits(_ valid: LaneMask, at p: Int) -> SIMD8<UInt64> {
        var wide = SIMD8<UInt64>()
        for lane in 0..<chunkWidth { wide[lane] = UInt64(truncatingIfNeeded: valid[lane] & 1) }
        return wide &<< SIMD8<UInt64>(repeating: UInt64(truncatingIfNeeded: p & 63))
    }

    /// Writes positions `start ..< end` (one 64-position group) of the lane group's eight rows.
    func flush(_ bits: SIMD8<UInt64>, group: Int, from start: Int, to end: Int) {
        for lane in 0..<chunkWidth {
            let row = first + (group &* chunkWidth &+ lane) &* rowStride
            var word = bits[lane] &>> UInt64(truncatingIfNeeded: start & 63)
            var p = start
            if colStride == 1 {
                while p &+ 8 <= end {
                    UnsafeMutableRawPointer(row + p).storeBytes(of: bytesOfBits(word & 0xFF).littleEndian, as: UInt64.self)
                    word &>>= 8
                    p &+= 8
                }
            }
            while p < end {
                row[p &* colStride] = UInt8(truncatingIfNeeded: word & 1)
                word &>>= 1
                p &+= 1
            }
        }
    }
}

/// Bit `i` of `bits` (< 256) as byte `i` (0 or 1) of the result: each byte keeps its own bit of
/// the replicated value, and adding 0x7F carries into the byte's top bit iff that bit was set.
@inline(__always)
func bytesOfBits(_ bits: UInt64) -> UInt64 {
    let own = (bits &* 0x0101_0101_0101_0101) & 0x8040_2010_0804_0201
    return ((own &+ 0x7F7F_7F7F_7F7F_7F7F) &>> 7) & 0x0101_0101_0101_0101
}

extension ColumnLanes {
    /// Moves the float32 counters into the integer counts (every `LaneStats.blockLength` positions).
    mutating func flushCounts() {
        counts.counted &+= SIMD8<Int>(truncatingIfNeeded: SIMD8<Int32>(lanes.counted))
        counts.nonfinite &+= SIMD8<Int>(truncatingIfNeeded: SIMD8<Int32>(lanes.nonfinite))
        counts.nans &+= SIMD8<Int>(truncatingIfNeeded: SIMD8<Int32>(lanes.nans))
        lanes.counted = Lanes()
        lanes.nonfinite = Lanes()
        lanes.nans = Lanes()
    }

    /// Row `lane`'s statistics, with its sums combined over position lanes in the row scan's order.
    func summary(_ lane: Int) -> RowSummary {
        var summary = RowSummary()
        summary.counted = counts.counted[lane]
        summary.nonfinite = counts.nonfinite[lane]
        summary.nans = counts.nans[lane]
        summary.maxValue = lanes.maxValue[lane]
        summary.minValue = lanes.minValue[lane]
        summary.minNonNegative = lanes.minNonNegative[lane]
        summary.maxNonPositive = lanes.maxNonPositive[lane]
        // Row `lane` of each position lane's sums, as the row scan's eight float64 lanes.
        var perPosition = WideSums()
        for position in 0..<chunkWidth {
            let sums = wide[position]
            perPosition.linear[position] = sums.linear[lane]
            perPosition.k2[position] = sums.k2[lane]
            perPosition.k3[position] = sums.k3[lane]
            perPosition.abs[position] = sums.abs[lane]
            perPosition.ratio[position] = sums.ratio[lane]
            perPosition.tv[position] = sums.tv[lane]
            perPosition.chi2[position] = sums.chi2[lane]
            perPosition.raw[position] = sums.raw[lane]
        }
        summary.finishSums(perPosition)
        return summary
    }
}
