/* C# entry file: the common layer, with this folder's local.i (namespace Alibi). */
%include "../swig/alibi.i"
