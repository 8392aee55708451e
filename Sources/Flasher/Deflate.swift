import CZlib

/// zlib-format compression (level 9, as esptool's `-z`) for FLASH_DEFL_* writes.
public enum Deflate {
    public static func compress(_ data: [UInt8], level: Int32 = 9) -> [UInt8]? {
        var destLen = compressBound(uLong(data.count))
        var out = [UInt8](repeating: 0, count: Int(destLen))
        let rc = out.withUnsafeMutableBufferPointer { o in
            data.withUnsafeBufferPointer { i in
                compress2(o.baseAddress, &destLen, i.baseAddress, uLong(i.count), level)
            }
        }
        guard rc == Z_OK else { return nil }
        out.removeSubrange(Int(destLen)...)
        return out
    }
}
