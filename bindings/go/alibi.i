/* Go entry file: the common layer, with this folder's local.i (package alibi). */
%include "../swig/alibi.i"
