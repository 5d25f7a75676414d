/** The JSON of `vmictl profile info` (what a profile is for) and `profile info --type` (one struct's layout). */

export interface ProfileInfoJson {
  file: string;
  banner: string | null;
  producer: { name?: string; version?: string; datetime?: string } | null;
  format: string;
  userTypes: number;
  enums: number;
  baseTypes: number;
  symbols: number;
}

export interface ProfileTypeJson {
  name: string;
  kind: string;
  size: number;
  /** each field's offset from the start of the struct, size, and type as C writes it */
  fields: { name: string; offset: number; size: number; type: string }[];
}
