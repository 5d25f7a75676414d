/**
 * BTF, the kernel's compact type information: `parseBtf(blob)` reads every kind of record, and
 * `btfToModel(btf)` turns them into the DWARF extractor's model, from which `modelToIsf` makes the
 * profile sections.
 */
export { parseBtf, parseBtfHeader, BTF_KIND, BTF_INT, BTF_MAGIC, type Btf, type BtfType, type BtfHeader } from './parse';
export { btfToModel } from './model';
