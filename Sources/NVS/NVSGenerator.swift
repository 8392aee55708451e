import ESPCore

/// NVS format constants (see README, NVS; ESP-IDF nvs_page.hpp / nvs_types.hpp).
public enum NVSFormat {
    public static let pageSize = 4096
    public static let entrySize = 32
    public static let entriesPerPage = 126
    public static let firstEntryOffset = 64

    public enum PageState: UInt32, Sendable, CaseIterable {
        case uninitialized = 0xFFFF_FFFF, active = 0xFFFF_FFFE, full = 0xFFFF_FFFC, freeing = 0xFFFF_FFF8,
             corrupt = 0xFFFF_FFF0, invalid = 0x0000_0000
    }

    public enum ItemType: UInt8, Sendable, CaseIterable {
        case u8 = 0x01, i8 = 0x11, u16 = 0x02, i16 = 0x12, u32 = 0x04, i32 = 0x14, u64 = 0x08, i64 = 0x18
        case string = 0x21, blob = 0x41, blobData = 0x42, blobIndex = 0x48

        public var name: String {
            switch self {
            case .u8: "u8"; case .i8: "i8"; case .u16: "u16"; case .i16: "i16"
            case .u32: "u32"; case .i32: "i32"; case .u64: "u64"; case .i64: "i64"
            case .string: "string"; case .blob: "blob"; case .blobData: "blob_data"; case .blobIndex: "blob_index"
            }
        }
    }

    /// Page version byte: 0xFE multipage blobs (v2), 0xFF single-page blobs (v1).
    public static func versionByte(_ version: Int) -> UInt8 { version == 1 ? 0xFF : 0xFE }

    /// The CRC NVS uses everywhere: zlib `crc32(data, 0xFFFFFFFF)` (ESPCore's CRC32 with that
    /// seed; this copy runs over contiguous memory, which the generator needs for speed).
    static func crc(_ bytes: ArraySlice<UInt8>) -> UInt32 { crcUpdate(0xFFFF_FFFF, bytes) }
    static func crc(_ bytes: [UInt8]) -> UInt32 { crcUpdate(0xFFFF_FFFF, bytes[...]) }

    static func crcUpdate(_ crc: UInt32, _ bytes: ArraySlice<UInt8>) -> UInt32 {
        var c = ~crc
        crcTable.withUnsafeBufferPointer { t in
            bytes.withUnsafeBufferPointer { b in
                for x in b { c = t[Int((c ^ UInt32(x)) & 0xFF)] ^ (c >> 8) }
            }
        }
        return ~c
    }

    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? (0xEDB8_8320 ^ (c >> 1)) : (c >> 1) }
        return c
    }

    /// Item header CRC: bytes 0..<4 and 8..<32 of the 32-byte item.
    static func itemCRC(_ item: ArraySlice<UInt8>) -> UInt32 {
        let b = item.startIndex
        return crcUpdate(crcUpdate(0xFFFF_FFFF, item[b..<(b + 4)]), item[(b + 8)..<(b + 32)])
    }
}

/// How an NVS image is generated: size, blob version and optional encryption key.
public struct NVSImageOptions: Sendable {
    public var size: Int
    public var version: Int
    /// 64-byte XTS key (eky ‖ tky); nil for a plaintext image.
    public var key: [UInt8]?

    public init(size: Int, version: Int = 2, key: [UInt8]? = nil) {
        self.size = size
        self.version = version
        self.key = key
    }
}

/// The result of a generation: the image and any warnings about the input.
public struct NVSImage: Sendable {
    public var bytes: [UInt8]
    public var warnings: [Diagnostic]
    /// True when the size is below 0x3000: a read-only NVS partition (no reserved page).
    public var readOnly: Bool
    /// Key-value entries written (namespace definitions not counted).
    public var entryCount: Int
    /// Pages holding entries.
    public var usedPages: Int
}

/// Builds NVS partition images exactly as esp-idf-nvs-partition-gen 0.3.0 does.
public enum NVSGenerator {
    /// Checks a partition size: multiple of 4096 and at least 4096. Returns whether it is read-only.
    public static func checkSize(_ size: Int) throws(NVSError) -> Bool {
        guard size % NVSFormat.pageSize == 0 else { throw .invalidSize(size, reason: "not a multiple of 4096") }
        guard size >= NVSFormat.pageSize else { throw .invalidSize(size, reason: "smaller than one page (4096 bytes)") }
        guard size <= 0x1000_0000 else { throw .invalidSize(size, reason: "larger than 256 MiB") }
        return size < 3 * NVSFormat.pageSize
    }

    /// Generates an image from CSV text. `files` maps the paths of `file` rows to their contents.
    public static func generate(csv: String, files: [String: [UInt8]] = [:], options: NVSImageOptions) throws(NVSError) -> NVSImage {
        let items = try NVSCSV.items(try NVSCSV.rows(csv), files: files)
        return try generate(items: items, options: options)
    }

    /// Generates an image from items in order.
    public static func generate(items: [NVSItem], options: NVSImageOptions) throws(NVSError) -> NVSImage {
        let readOnly = try checkSize(options.size)
        guard options.version == 1 || options.version == 2 else {
            throw .limitExceeded("NVS version must be 1 or 2 (got \(options.version))", at: nil)
        }
        var cipher: XTSAES256?
        if let key = options.key {
            guard let c = XTSAES256(key: key) else {
                throw .invalidKeys("the NVS encryption key must be 64 bytes (got \(key.count))", hint: nil)
            }
            cipher = c
        }
        var w = PageWriter(budget: readOnly ? options.size : options.size - NVSFormat.pageSize,
                           version: options.version, cipher: cipher, partitionSize: options.size)
        var warnings: [Diagnostic] = []
        try w.newPage(.data, at: nil)
        var namespaces: [String: Int] = [:]
        var namespaceCount = 0
        for item in items {
            switch item {
            case let .namespace(name, at):
                if let existing = namespaces[name] {
                    if existing != namespaceCount {
                        warnings.append(Diagnostic(
                            "namespace `\(name)` is opened again: like nvs_partition_gen, the entries that follow are stored in the most recently created namespace (index \(namespaceCount)), not in `\(name)`",
                            line: at?.line, column: at?.column,
                            hint: "keep the entries of one namespace together"))
                    }
                    continue
                }
                namespaceCount += 1
                guard namespaceCount <= 254 else { throw .limitExceeded("more than 254 namespaces", at: at) }
                namespaces[name] = namespaceCount
                try w.writePrimitive(ns: 0, key: name, type: .u8, value: UInt64(namespaceCount), at: at)
            case let .entry(key, value, at):
                let ns = UInt8(namespaceCount)
                switch value {
                case .u8(let v): try w.writePrimitive(ns: ns, key: key, type: .u8, value: UInt64(v), at: at)
                case .i8(let v): try w.writePrimitive(ns: ns, key: key, type: .i8, value: UInt64(UInt8(bitPattern: v)), at: at)
                case .u16(let v): try w.writePrimitive(ns: ns, key: key, type: .u16, value: UInt64(v), at: at)
                case .i16(let v): try w.writePrimitive(ns: ns, key: key, type: .i16, value: UInt64(UInt16(bitPattern: v)), at: at)
                case .u32(let v): try w.writePrimitive(ns: ns, key: key, type: .u32, value: UInt64(v), at: at)
                case .i32(let v): try w.writePrimitive(ns: ns, key: key, type: .i32, value: UInt64(UInt32(bitPattern: v)), at: at)
                case .u64(let v): try w.writePrimitive(ns: ns, key: key, type: .u64, value: v, at: at)
                case .i64(let v): try w.writePrimitive(ns: ns, key: key, type: .i64, value: UInt64(bitPattern: v), at: at)
                case .string(let s): try w.writeVariable(ns: ns, key: key, data: s + [0], isString: true, at: at)
                case .blob(let b): try w.writeVariable(ns: ns, key: key, data: b, isString: false, at: at)
                }
            }
        }
        if !readOnly { w.finish() }
        var out = [UInt8]()
        out.reserveCapacity(w.pages.count * NVSFormat.pageSize)
        for p in w.pages { out += p }
        let entryCount = items.reduce(0) { n, item in if case .entry = item { return n + 1 } else { return n } }
        return NVSImage(bytes: out, warnings: warnings, readOnly: readOnly, entryCount: entryCount,
                        usedPages: w.usedPages)
    }
}

/// Page-by-page writer reproducing the generator's layout decisions.
struct PageWriter {
    enum Kind { case data, empty, reserved }

    var pages: [[UInt8]] = []
    var pageNumber = -1
    var entryNumber = 0
    /// Bytes still available for new pages (nil once the reserved page is being added).
    var budget: Int
    let version: Int
    let cipher: XTSAES256?
    let partitionSize: Int

    init(budget: Int, version: Int, cipher: XTSAES256?, partitionSize: Int) {
        self.partitionSize = partitionSize
        self.budget = budget
        self.version = version
        self.cipher = cipher
    }

    private var current: Int { pages.count - 1 }

    /// Pages with a header (data pages), counted as they are created.
    var usedPages = 0

    mutating func newPage(_ kind: Kind, at: CSVLocation?) throws(NVSError) {
        if !pages.isEmpty && kind == .data {
            if pages[current].loadState() == NVSFormat.PageState.active.rawValue {
                pages[current].storeLE(NVSFormat.PageState.full.rawValue, at: 0)
            }
        }
        if kind != .reserved {
            guard budget > 0 else { throw .partitionTooSmall(size: partitionSize, at: at) }
            budget -= NVSFormat.pageSize
        }
        pageNumber += 1
        var page = [UInt8](repeating: 0xFF, count: NVSFormat.pageSize)
        if kind == .data {
            usedPages += 1
            page.storeLE(NVSFormat.PageState.active.rawValue, at: 0)
            page.storeLE(UInt32(truncatingIfNeeded: pageNumber), at: 4)
            page[8] = NVSFormat.versionByte(version)
            page.storeLE(NVSFormat.crc(page[4..<28]), at: 28)
        }
        pages.append(page)
        entryNumber = 0
    }

    /// Empty pages up to the size, then the reserved (all 0xFF) page.
    mutating func finish() {
        while budget > 0 {
            budget -= NVSFormat.pageSize
            pageNumber += 1
            pages.append([UInt8](repeating: 0xFF, count: NVSFormat.pageSize))
        }
        pageNumber += 1
        pages.append([UInt8](repeating: 0xFF, count: NVSFormat.pageSize))
    }

    /// Writes `count` entries (data padded with 0xFF) at the current entry number.
    mutating func writeEntries(_ data: ArraySlice<UInt8>, count: Int) {
        guard count > 0 else { return }
        let start = NVSFormat.firstEntryOffset + entryNumber * NVSFormat.entrySize
        let length = count * NVSFormat.entrySize
        var chunk = [UInt8](repeating: 0xFF, count: length)
        var i = 0
        for b in data.prefix(length) { chunk[i] = b; i += 1 }
        if let cipher {
            for e in 0..<count {
                let address = UInt64(pageNumber * NVSFormat.pageSize + start + e * NVSFormat.entrySize)
                cipher.process(&chunk, offset: e * NVSFormat.entrySize, count: NVSFormat.entrySize, sector: address)
            }
        }
        let p = current
        pages[p].withUnsafeMutableBufferPointer { page in
            for j in 0..<length { page[start + j] = chunk[j] }
            for e in entryNumber..<(entryNumber + count) {
                // Entry state WRITTEN (0b10): clear the low bit of the entry's 2-bit pair.
                page[32 + (2 * e) / 8] &= ~(UInt8(1) << UInt8((2 * e) & 7))
            }
        }
        entryNumber += count
    }

    static func header(ns: UInt8, type: NVSFormat.ItemType, span: UInt8, chunk: UInt8, key: String) -> [UInt8] {
        var h = [UInt8](repeating: 0xFF, count: 32)
        h[0] = ns
        h[1] = type.rawValue
        h[2] = span
        h[3] = chunk
        for i in 8..<24 { h[i] = 0 }
        for (i, b) in key.utf8.prefix(16).enumerated() { h[8 + i] = b }
        return h
    }

    static func sealCRC(_ h: inout [UInt8]) {
        h.storeLE(NVSFormat.itemCRC(h[0..<32]), at: 4)
    }

    mutating func writePrimitive(ns: UInt8, key: String, type: NVSFormat.ItemType, value: UInt64,
                                 at: CSVLocation?) throws(NVSError) {
        if entryNumber >= NVSFormat.entriesPerPage { try newPage(.data, at: at) }
        var h = Self.header(ns: ns, type: type, span: 1, chunk: 0xFF, key: key)
        let width: Int
        switch type {
        case .u8, .i8: width = 1
        case .u16, .i16: width = 2
        case .u32, .i32: width = 4
        default: width = 8
        }
        for i in 0..<width { h[24 + i] = UInt8((value >> (8 * UInt64(i))) & 0xFF) }
        Self.sealCRC(&h)
        writeEntries(h[...], count: 1)
    }

    mutating func writeVariable(ns: UInt8, key: String, data: [UInt8], isString: Bool,
                                at: CSVLocation?) throws(NVSError) {
        let maxSize = version == 1 ? 1984 : 4000
        if (version == 1 || isString) && data.count > maxSize {
            throw .valueTooLarge(key: key, size: data.count, limit: maxSize, at: at,
                                 hint: isString ? "strings (with their terminating NUL) are limited to \(maxSize) bytes"
                                     : "version 1 blobs are limited to 1984 bytes; use --version 2 for larger blobs")
        }
        let dataEntries = (data.count + 31) / 32
        let total = dataEntries + 1
        let chunked = version == 2 && !isString
        func fits(_ entry: Int) -> Bool {
            if entry >= NVSFormat.entriesPerPage { return false }
            if entry + total >= NVSFormat.entriesPerPage && !chunked { return false }
            return true
        }
        if !fits(entryNumber) {
            try newPage(.data, at: at)
            guard fits(entryNumber) else {
                // The generator itself fails here (it cannot place the value on an empty page).
                let limit = (NVSFormat.entriesPerPage - 2) * NVSFormat.entrySize
                throw .valueTooLarge(key: key, size: data.count, limit: limit, at: at,
                                     hint: "a value stored in one page holds at most \(limit) bytes (a string at most \(limit - 1) characters)")
            }
        }
        if chunked {
            try writeChunkedBlob(ns: ns, key: key, data: data, at: at)
            return
        }
        var h = Self.header(ns: ns, type: isString ? .string : .blob, span: UInt8(total),
                            chunk: 0xFF, key: key)
        h.storeLE(UInt16(data.count), at: 24)
        h.storeLE(NVSFormat.crc(data), at: 28)
        Self.sealCRC(&h)
        writeEntries(h[...], count: 1)
        writeEntries(data[...], count: dataEntries)
    }

    mutating func writeChunkedBlob(ns: UInt8, key: String, data: [UInt8], at: CSVLocation?) throws(NVSError) {
        var offset = 0
        var remaining = data.count
        var chunkCount = 0
        while true {
            let tailroom = (NVSFormat.entriesPerPage - entryNumber - 1) * NVSFormat.entrySize
            let chunkSize = min(tailroom, remaining)
            remaining -= chunkSize
            let chunkEntries = (chunkSize + 31) / 32
            guard chunkCount <= 255 else { throw .limitExceeded("blob `\(key)` needs more than 256 chunks", at: at) }
            var h = Self.header(ns: ns, type: .blobData, span: UInt8(chunkEntries + 1), chunk: UInt8(chunkCount), key: key)
            let chunk = data[offset..<(offset + chunkSize)]
            h.storeLE(UInt16(chunkSize), at: 24)
            h.storeLE(NVSFormat.crc(chunk), at: 28)
            Self.sealCRC(&h)
            writeEntries(h[...], count: 1)
            writeEntries(chunk, count: chunkEntries)
            chunkCount += 1
            if remaining > 0 || tailroom - chunkSize < NVSFormat.entrySize {
                try newPage(.data, at: at)
            }
            offset += chunkSize
            if remaining == 0 {
                guard chunkCount <= 255 else { throw .limitExceeded("blob `\(key)` needs more than 255 chunks", at: at) }
                var idx = Self.header(ns: ns, type: .blobIndex, span: 1, chunk: 0xFF, key: key)
                idx.storeLE(UInt32(data.count), at: 24)
                idx[28] = UInt8(chunkCount)
                idx[29] = 0
                Self.sealCRC(&idx)
                writeEntries(idx[...], count: 1)
                return
            }
        }
    }
}

extension Array where Element == UInt8 {
    func loadState() -> UInt32 { self[0..<4].loadLE(UInt32.self) }
}
