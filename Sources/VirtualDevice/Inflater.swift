import CZlib

/// Incremental zlib-format inflation (header, raw deflate, Adler-32 trailer) for FLASH_DEFL_DATA.
final class Inflater {
    enum Failure: Error { case corrupt, adler }

    private var stream = z_stream()
    private var open = false
    private(set) var finished = false

    init() {
        let rc = inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        open = rc == Z_OK
    }

    deinit { if open { inflateEnd(&stream) } }

    /// Feeds compressed bytes; returns the decompressed bytes they produced.
    func feed(_ input: [UInt8]) throws(Failure) -> [UInt8] {
        guard open else { throw .corrupt }
        if finished { return [] } // bytes after the end of the stream are ignored
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var input = input
        var failure: Failure?
        input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inBuf.count)
            while true {
                let produced: Int
                let rc: Int32 = chunk.withUnsafeMutableBufferPointer { outBuf in
                    stream.next_out = outBuf.baseAddress
                    stream.avail_out = uInt(outBuf.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                produced = chunk.count - Int(stream.avail_out)
                output.append(contentsOf: chunk[0..<produced])
                if rc == Z_STREAM_END { finished = true; break }
                if rc == Z_DATA_ERROR {
                    failure = (stream.msg.map { String(cString: $0) } ?? "").contains("check") ? .adler : .corrupt
                    break
                }
                if rc != Z_OK && rc != Z_BUF_ERROR { failure = .corrupt; break }
                if stream.avail_in == 0 && stream.avail_out != 0 { break }
                if rc == Z_BUF_ERROR { break }
            }
            stream.next_in = nil
            stream.avail_in = 0
        }
        if let failure { throw failure }
        return output
    }
}
