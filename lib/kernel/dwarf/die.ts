/**
 * The decoded form of one DIE: only the attributes type extraction looks at, in a record that the
 * hot loop reuses instead of allocating one object per DIE.
 */

/** What a DIE says, as far as type extraction cares. -1 means absent for numeric fields. */
export class Die {
  offset = 0;
  tag = 0;
  hasChildren = false;
  /** Offset just past the attributes: the first child, or the next sibling when there are none. */
  next = 0;
  name: string | undefined = undefined;
  /** DW_AT_producer (only read on unit roots; the compiler and its flags). */
  producer: string | undefined = undefined;
  /** Target of DW_AT_type as a section offset in `typeSection`, or -1. */
  type = -1;
  typeSection = 0;
  typeSig: bigint | undefined = undefined;
  sibling = -1;
  byteSize = -1;
  declaration = false;
  memberLocation = -1;
  bitSize = -1;
  bitOffset = -1;
  dataBitOffset = -1;
  encoding = -1;
  count = -1;
  upperBound: number | undefined = undefined;
  lowerBound = 0;
  constValue: bigint | undefined = undefined;
  location: Buffer | undefined = undefined;
  specification = -1;
  language = -1;
  strOffsetsBase = -1;
  addrBase = -1;
  /** A DW_AT_type in a form we cannot follow (a dwz supplementary file). */
  unresolvable = false;

  reset(): void {
    this.name = undefined;
    this.producer = undefined;
    this.type = -1;
    this.typeSection = 0;
    this.typeSig = undefined;
    this.sibling = -1;
    this.byteSize = -1;
    this.declaration = false;
    this.memberLocation = -1;
    this.bitSize = -1;
    this.bitOffset = -1;
    this.dataBitOffset = -1;
    this.encoding = -1;
    this.count = -1;
    this.upperBound = undefined;
    this.lowerBound = 0;
    this.constValue = undefined;
    this.location = undefined;
    this.specification = -1;
    this.language = -1;
    this.strOffsetsBase = -1;
    this.addrBase = -1;
    this.unresolvable = false;
  }
}

